-- stagecast roles, part 2 of 2: run as the owner (the role that runs `stagecast migrate`) after
-- EVERY migrate, so objects a new version adds are granted too. Idempotent. Applied by
-- `stagecast roles apply`; or with psql:
--   psql "$OWNER_URL" --single-transaction -v worker=stagecast_worker -f sql/roles/worker.sql \
--        -f sql/roles/worker_vacuum_pg16.sql      # or _pg17.sql on PostgreSQL 17+
-- The worker role gets exactly what `stagecast run` does (and the reads of `stagecast doctor`
-- and `stagecast keys rotate`, which run with the same DATABASE_URL). It gets nothing on the
-- CRM's tables: it reads them through the stagecast.crm_* views (a view reads its tables with
-- its owner's privileges) and writes them only through the adapter functions, which are
-- SECURITY DEFINER. It may not call the admin functions, change a view or function, or
-- read anything the CRM did not expose through a view.

-- Name the schema's objects.
GRANT USAGE ON SCHEMA stagecast TO :"worker";

-- The queue. SELECT: claim, lease, counts and gauges read it. UPDATE: claim (running, lease),
-- heartbeat, retry/throttle/release outcomes. INSERT: expanding a bulk job into one job per
-- customer. DELETE: done jobs leave the table (complete_jobs, expand_stage_change_batch) and
-- retention prunes failed and cancelled ones.
GRANT SELECT, INSERT, UPDATE, DELETE ON stagecast.jobs TO :"worker";
-- Done jobs are moved here (INSERT), pruned by retention (DELETE, SELECT for its WHERE).
GRANT SELECT, INSERT, DELETE ON stagecast.job_archive TO :"worker";
-- The delivery audit and ledger: one row per event sent (INSERT), read before a retry so a
-- delivered event is not sent again (SELECT), pruned by retention (DELETE).
GRANT SELECT, INSERT, DELETE ON stagecast.deliveries TO :"worker";
-- Chat alerts: recorded once per cause (INSERT ... RETURNING), linked to the chat message
-- posted for them, or to why the chat refused it (UPDATE chat_message_id, chat_error), pruned by
-- retention (DELETE).
GRANT SELECT, INSERT, UPDATE (chat_message_id, chat_error), DELETE ON stagecast.alerts TO :"worker";
-- Stage changes a trigger had to park: the worker moves them back into the queue.
GRANT SELECT, DELETE ON stagecast.enqueue_failures TO :"worker";
-- Dead-worker rescue: each worker registers itself (INSERT, UPDATE on a re-register) and every
-- worker's rescue marks locks it finds missing (UPDATE) and forgets dead workers (DELETE).
GRANT SELECT, INSERT, UPDATE, DELETE ON stagecast.workers TO :"worker";
-- Read by `stagecast doctor` only (it lists the stage configs the trigger found invalid).
GRANT SELECT ON stagecast.config_problems TO :"worker";

-- Limits shared by all workers (migration 20261202130000): a request slot and a pause per
-- destination (INSERT ... ON CONFLICT UPDATE, SELECT), holds (read, written, lifted: DELETE)
-- and the workers' presence (upserted, stale rows deleted).
GRANT SELECT, INSERT, UPDATE ON stagecast.destination_limits TO :"worker";
GRANT SELECT, INSERT, UPDATE, DELETE ON stagecast.destination_holds TO :"worker";
GRANT SELECT, INSERT, UPDATE, DELETE ON stagecast.limit_peers TO :"worker";

-- The adapter views, the worker's only reads of the CRM (docs/crm-integration.md §5).
GRANT SELECT ON stagecast.crm_stages, stagecast.crm_pixels, stagecast.crm_campaigns,
                stagecast.crm_customers, stagecast.crm_contacts, stagecast.crm_chats,
                stagecast.crm_messages
   TO :"worker";

-- Posting new alerts, each in its own exception block so a chat that refuses one does not fail
-- the write-back (not SECURITY DEFINER: it runs as the worker and calls write_chat_alert).
GRANT EXECUTE ON FUNCTION stagecast.post_chat_alerts(bigint[]) TO :"worker";
-- The adapter's write functions (SECURITY DEFINER): post an alert in the customer's chat, seal
-- a plaintext token (and re-seal on `stagecast keys rotate`), record a first touch.
GRANT EXECUTE ON FUNCTION stagecast.write_chat_alert(bigint, text, jsonb),
                          stagecast.store_sealed_token(bigint, text, text),
                          stagecast.replace_sealed_token(bigint, text, text),
                          stagecast.record_first_touch(bigint, jsonb, bigint)
   TO :"worker";
-- The enqueue functions (SECURITY DEFINER): the worker's maintenance re-queues what a trigger
-- parked in stagecast.enqueue_failures through them.
GRANT EXECUTE ON FUNCTION stagecast.enqueue_stage_changes(bigint[], bigint[], bigint[], timestamptz),
                          stagecast.enqueue_inbound_messages(bigint[])
   TO :"worker";

-- The identity of a stage change, the pending dedup key: the batch expansion and the re-queue of
-- parked changes compute it in their statements (a pure function, see its migration).
GRANT EXECUTE ON FUNCTION stagecast.stage_change_dedup_key(bigint, bigint, timestamptz) TO :"worker";
-- Changes a trigger could neither queue nor park: the stagecast_enqueue_fallbacks gauge and
-- `stagecast doctor` read the count (SECURITY DEFINER over a sequence the worker cannot touch).
GRANT EXECUTE ON FUNCTION stagecast.lost_enqueues() TO :"worker";

-- /readyz and `stagecast doctor` compare the applied migrations with the binary's (sqlx keeps
-- them in the migrating owner's schema: public, with the default search_path).
GRANT SELECT ON public._sqlx_migrations TO :"worker";
-- `stagecast doctor` checks the stage configs with the same function the trigger uses.
GRANT EXECUTE ON FUNCTION stagecast.utm_event_problem(jsonb) TO :"worker";
