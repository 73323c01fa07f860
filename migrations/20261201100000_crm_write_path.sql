-- The CRM's write path (issue 12, findings 1, 2 and 8). Every stagecast function a CRM write
-- runs is redefined here so that:
--
-- 1. Its cost does not depend on what the pooled session did before. PL/pgSQL caches the plan of
--    each static statement for the life of the connection, planned for the transition tables'
--    row counts at its first execution: a session whose first stage change was one row kept a
--    nested-loop join of old_rows × new_rows for its next 10,000-row UPDATE, and one whose first
--    was a 100,000-row UPDATE kept a plan costed at 1.4 M, which Postgres JIT-compiles on every
--    later call (~130 ms for one row). `stagecast bench`, same session, before this migration:
--    10k-row bulk after single-row changes 146 → 8,171 ms (55.8×); single-row after a 100k-row
--    bulk 0.18 → 149 ms (849×). Measured alternatives (pgbench, one session, single-row UPDATE
--    with rollback; bare 0.19 ms; 10k-row bulk 1.2-1.3× in every variant):
--      static join (the old trigger)                     0.31 ms, but 60× / 390× in the orders above
--      static join + SET jit = off, enable_nestloop = off 0.32 ms (a cached plan that survives any
--                                                         row count, by forbidding the bad shapes)
--      no join: zip old/new by position, checked         0.33 ms (relies on both transition
--                                                         tables keeping the same row order)
--      EXECUTE + SET jit = off                           0.41 ms
--    The join is EXECUTEd: planned for the rows each statement changed, with nothing cached to
--    go stale and no undocumented ordering to rely on, for +0.1 ms of planning per statement
--    (within the target, single-row ≤ 2× + 1 ms). Statements without a join (the insert
--    triggers) stay static: their plan shape cannot depend on row counts, only their cost, which
--    matters for nothing but JIT. `jit = off` on every function of the path: JIT never pays for
--    a single pass over a transition table, and the estimates of a join without statistics are
--    inflated (n × m × 0.005 rows) enough to trigger it on a plain 10k-row bulk.
--
-- 2. A locked or slow queue never fails or stalls the CRM's write. Every lock wait on the path is
--    bounded by `lock_timeout` (stagecast.enqueue_lock_wait(): 50 ms, or less when the CRM's
--    session has a smaller lock_timeout or little statement_timeout left). What cannot be queued
--    within it is parked in stagecast.enqueue_failures (stagecast.park_enqueue); what cannot
--    even be parked is a WARNING naming the change, counted by stagecast.lost_enqueues(). The
--    lock_timeout is set with set_config(..., true) inside a subtransaction and put back before
--    leaving: a plpgsql SET clause would restore it too, but then the caller's own lock_timeout
--    could not be read to honour it. An error rolls the subtransaction (and the setting) back.
--
-- 3. The pending dedup key of a stage change is the change itself: customer, stage and the time
--    of the change in µs (stagecast.stage_change_dedup_key), so only a true duplicate (the same
--    change seen twice) is coalesced. A customer who leaves a stage and comes back while the
--    first change still waits (retry, throttle) is a second change: its own job and event_id.
--    Live jobs' keys are migrated at the end.
--
-- Every SECURITY DEFINER function: search_path = pg_catalog, pg_temp and every stagecast or
-- public object schema-qualified. Re-runnable: tests/crm_write_path.rs runs it again on live
-- rows.

-- ---- dedup key --------------------------------------------------------------------------------

-- 'stage_change:<customer>:<stage>:<µs since epoch>', the identity src/pipeline's change_key and
-- the event_id are built from. Plain SQL without a SET clause so the planner inlines it into the
-- statements that use it (the batch expansion, the re-queue); it runs under the caller's
-- search_path, hence operators pinned to pg_catalog. Callable by PUBLIC: a pure function of its
-- arguments that reads nothing.
CREATE OR REPLACE FUNCTION stagecast.stage_change_dedup_key(p_customer_id bigint, p_stage_id bigint, p_changed_at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 'stage_change:' OPERATOR(pg_catalog.||) p_customer_id::text
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) p_stage_id::text
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
           ((pg_catalog.extract('epoch', p_changed_at) OPERATOR(pg_catalog.*) 1000000)::bigint)::text
$$;

-- ---- bounded lock waits -----------------------------------------------------------------------

-- How long one lock wait of the CRM write path may last, as a lock_timeout value ('50ms'): our
-- own bound, or the CRM session's lock_timeout if smaller, or a quarter of what is left of its
-- statement_timeout (and of transaction_timeout, PostgreSQL 17+), so that our waits (the queue,
-- then the parking table) can never make the CRM's statement time out. Never 0, which would mean
-- no limit. 50 ms: plain VACUUM's truncation holds its ACCESS EXCLUSIVE lock for at most ~20 ms
-- once someone waits, so normal operation never parks; a migration or an open transaction lasts
-- far longer than any wait worth making a CRM's write pay. Never raises (a garbled setting
-- falls back to the bound). Callable by PUBLIC: it reads only the caller's own settings.
CREATE OR REPLACE FUNCTION stagecast.enqueue_lock_wait() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ms numeric := 50;
    v_setting text;
BEGIN
    BEGIN
        v_setting := current_setting('lock_timeout');
        IF v_setting <> '0' THEN
            v_ms := least(v_ms, extract(epoch FROM v_setting::interval) * 1000);
        END IF;
        v_setting := current_setting('statement_timeout');
        IF v_setting <> '0' THEN
            v_ms := least(v_ms, (extract(epoch FROM v_setting::interval)
                                 - extract(epoch FROM clock_timestamp() - statement_timestamp())) * 1000 / 4);
        END IF;
        v_setting := current_setting('transaction_timeout', true);
        IF v_setting IS NOT NULL AND v_setting <> '0' THEN
            v_ms := least(v_ms, (extract(epoch FROM v_setting::interval)
                                 - extract(epoch FROM clock_timestamp() - transaction_timestamp())) * 1000 / 4);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_ms := 50;
    END;
    RETURN greatest(ceil(v_ms), 1)::bigint::text || 'ms';
END $$;

-- ---- parking, and what cannot even be parked --------------------------------------------------

-- Changes that could be neither queued nor parked, since install or the last reset
-- (`SELECT setval('stagecast.lost_enqueues_seq', 1, false)`). A sequence because nextval is not
-- rolled back and takes no lock that the queue's or the parking table's holder has; so it may
-- also count a change whose CRM transaction later rolled back (an upper bound).
CREATE SEQUENCE IF NOT EXISTS stagecast.lost_enqueues_seq;

-- For `stagecast doctor` and the worker's metrics. SECURITY DEFINER so the reading role needs no
-- grant on the sequence; callable by PUBLIC: it returns one count and nothing else.
CREATE OR REPLACE FUNCTION stagecast.lost_enqueues() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stagecast.lost_enqueues_seq
$$;

-- Park what could not be queued. stagecast.enqueue_failures is the right place: a different
-- table from the queue, written only by these functions and drained only by the worker's
-- re-queue (DELETE … SKIP LOCKED), with no unique index to wait on and no trigger, so what locks
-- the queue (a migration, VACUUM FULL, an index build, an open transaction on a job row, the same
-- change uncommitted elsewhere) does not lock it; database-wide VACUUM FULL and REINDEX take one
-- table at a time. Only a transaction that locks both at once defeats it. Then (and if p_payload
-- is NULL: the changes are not known) the change is NOT queued: a WARNING, sent to the CRM's
-- session and the server log, carries everything needed to queue it again by hand, and
-- stagecast.lost_enqueues() counts it. The CRM's write still commits.
CREATE OR REPLACE FUNCTION stagecast.park_enqueue(p_kind text, p_payload jsonb, p_error text, p_wait text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lock_timeout text := current_setting('lock_timeout');
    v_error text := 'nothing to park';
BEGIN
    IF p_payload IS NOT NULL THEN
        BEGIN
            PERFORM set_config('lock_timeout', p_wait, true);
            INSERT INTO stagecast.enqueue_failures (kind, payload, error) VALUES (p_kind, p_payload, p_error);
            PERFORM set_config('lock_timeout', v_lock_timeout, true);
            RETURN;
        EXCEPTION WHEN OTHERS THEN
            v_error := SQLSTATE || ': ' || SQLERRM;
        END;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', p_wait, true);
        PERFORM nextval('stagecast.lost_enqueues_seq');
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN OTHERS THEN
        NULL; -- the WARNING below still names it
    END;
    RAISE WARNING 'stagecast: % NOT queued: queueing failed (%), parking failed (%); queue it again with the stagecast.enqueue_* function of this payload (docs/operations.md, "Lost enqueues"): %',
        p_kind, p_error, v_error, coalesce(p_payload::text, 'unknown');
END $$;

-- ---- the SQL API ------------------------------------------------------------------------------

-- Queue stage changes: parallel arrays, one element per customer.
-- * One change: one `stage_change` job, skipped when the stage has nothing configured
--   (utm_event = []) or when the same change (same customer, stage and changed_at) is already
--   pending.
-- * Several changes (a bulk UPDATE): ONE `stage_change_batch` job carrying the arrays. Inserting
--   10k job rows inside the CRM's statement would double its cost; one row keeps a bulk UPDATE
--   within ~1.3x of the bare UPDATE. The worker expands the batch into `stage_change` jobs
--   (sql/expand_stage_change_batch.sql), applying the same filters, outside the CRM transaction.
-- Never raises and never waits longer than stagecast.enqueue_lock_wait() for a lock: what
-- cannot be queued is parked (stagecast.park_enqueue). Returns the number of jobs queued.
CREATE OR REPLACE FUNCTION stagecast.enqueue_stage_changes(
    p_customer_ids bigint[],
    p_to_stage_ids bigint[],
    p_from_stage_ids bigint[] DEFAULT NULL,
    p_changed_at timestamptz DEFAULT statement_timestamp())
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_count integer := 0;
    v_lock_timeout text;
    v_wait text;
BEGIN
    IF coalesce(cardinality(p_customer_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- An explicit NULL means "now", like the default.
    p_changed_at := coalesce(p_changed_at, statement_timestamp());
    v_lock_timeout := current_setting('lock_timeout');
    v_wait := stagecast.enqueue_lock_wait();
    BEGIN
        PERFORM set_config('lock_timeout', v_wait, true);
        IF cardinality(p_customer_ids) = 1 THEN
            INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
            SELECT 'stage_change',
                   jsonb_build_object('customer_id', p_customer_ids[1],
                                      'from_stage_id', p_from_stage_ids[1],
                                      'to_stage_id', p_to_stage_ids[1],
                                      'changed_at', p_changed_at),
                   p_customer_ids[1],
                   stagecast.stage_change_dedup_key(p_customer_ids[1], p_to_stage_ids[1], p_changed_at)
              FROM stagecast.crm_stages s
             WHERE s.id = p_to_stage_ids[1]
               AND p_customer_ids[1] IS NOT NULL
               AND s.utm_event IS DISTINCT FROM '[]'::jsonb
            ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING;
        ELSE
            INSERT INTO stagecast.jobs (kind, payload)
            VALUES ('stage_change_batch',
                    jsonb_build_object('customer_ids', to_jsonb(p_customer_ids),
                                       'to_stage_ids', to_jsonb(p_to_stage_ids),
                                       'from_stage_ids', to_jsonb(p_from_stage_ids),
                                       'changed_at', p_changed_at));
        END IF;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('stage_change',
                    jsonb_build_object('customer_ids', to_jsonb(p_customer_ids),
                                       'to_stage_ids', to_jsonb(p_to_stage_ids),
                                       'from_stage_ids', to_jsonb(p_from_stage_ids),
                                       'changed_at', p_changed_at),
                    SQLSTATE || ': ' || SQLERRM, v_wait);
    END;
    RETURN v_count;
END $$;

-- Single-customer form, for CRMs with row-level triggers or application code.
CREATE OR REPLACE FUNCTION stagecast.enqueue_stage_change(
    p_customer_id bigint,
    p_to_stage_id bigint,
    p_from_stage_id bigint DEFAULT NULL,
    p_changed_at timestamptz DEFAULT statement_timestamp())
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT stagecast.enqueue_stage_changes(ARRAY[p_customer_id], ARRAY[p_to_stage_id], ARRAY[p_from_stage_id], p_changed_at)
$$;

-- Queue attribution jobs for inbound messages that may carry ad data (same bounds and parking).
-- force_custom_plan: `id = ANY($1)` is planned for the actual array each time; a generic plan
-- chosen while chat_messages was small (a sequential scan) would otherwise stay with the session
-- while the table grows.
CREATE OR REPLACE FUNCTION stagecast.enqueue_inbound_messages(p_message_ids bigint[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_count integer := 0;
    v_lock_timeout text;
    v_wait text;
BEGIN
    IF coalesce(cardinality(p_message_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    v_lock_timeout := current_setting('lock_timeout');
    v_wait := stagecast.enqueue_lock_wait();
    BEGIN
        PERFORM set_config('lock_timeout', v_wait, true);
        INSERT INTO stagecast.jobs (kind, payload, dedup_key, max_attempts)
        SELECT 'attribution', jsonb_build_object('message_id', m.id, 'chat_id', m.chat_id),
               'attribution:' || m.id, 6
          FROM stagecast.crm_messages m
         WHERE m.id = ANY (p_message_ids)
        ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('attribution', jsonb_build_object('message_ids', to_jsonb(p_message_ids)),
                                       SQLSTATE || ': ' || SQLERRM, v_wait);
    END;
    RETURN v_count;
END $$;

-- ---- our own CRM contract's triggers ----------------------------------------------------------

-- Statement-level with transition tables, so a bulk UPDATE of 10k customers costs one statement
-- instead of 10k trigger calls. The join is EXECUTEd (planned per statement, see the header).
-- An error here (which enqueue_stage_changes never raises) still parks what is known, or is
-- counted as lost: the CRM's write always commits.
CREATE OR REPLACE FUNCTION stagecast.customers_stage_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_ids bigint[];
    v_to bigint[];
    v_from bigint[];
BEGIN
    BEGIN
        EXECUTE 'SELECT array_agg(n.id), array_agg(n.stage_id), array_agg(o.stage_id)
                   FROM new_rows n JOIN old_rows o ON o.id = n.id
                  WHERE n.stage_id IS DISTINCT FROM o.stage_id AND n.stage_id IS NOT NULL'
           INTO v_ids, v_to, v_from;
        IF v_ids IS NOT NULL THEN
            PERFORM stagecast.enqueue_stage_changes(v_ids, v_to, v_from);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('stage_change',
                    CASE WHEN v_ids IS NOT NULL THEN
                        jsonb_build_object('customer_ids', to_jsonb(v_ids), 'to_stage_ids', to_jsonb(v_to),
                                           'from_stage_ids', to_jsonb(v_from), 'changed_at', statement_timestamp())
                    END,
                    SQLSTATE || ': ' || SQLERRM, stagecast.enqueue_lock_wait());
    END;
    RETURN NULL;
END $$;

-- No join: a static statement whose plan shape cannot depend on the row count.
CREATE OR REPLACE FUNCTION stagecast.customers_stage_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_ids bigint[];
    v_to bigint[];
BEGIN
    BEGIN
        SELECT array_agg(n.id), array_agg(n.stage_id) INTO v_ids, v_to
          FROM new_rows n
         WHERE n.stage_id IS NOT NULL;
        IF v_ids IS NOT NULL THEN
            PERFORM stagecast.enqueue_stage_changes(v_ids, v_to, NULL);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('stage_change',
                    CASE WHEN v_ids IS NOT NULL THEN
                        jsonb_build_object('customer_ids', to_jsonb(v_ids), 'to_stage_ids', to_jsonb(v_to),
                                           'from_stage_ids', NULL, 'changed_at', statement_timestamp())
                    END,
                    SQLSTATE || ': ' || SQLERRM, stagecast.enqueue_lock_wait());
    END;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION stagecast.chat_messages_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_ids bigint[];
BEGIN
    BEGIN
        SELECT array_agg(n.id) INTO v_ids
          FROM new_rows n
         WHERE stagecast.may_carry_ad_data(n.direction, n.metadata);
        IF v_ids IS NOT NULL THEN
            PERFORM stagecast.enqueue_inbound_messages(v_ids);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('attribution',
                    CASE WHEN v_ids IS NOT NULL THEN jsonb_build_object('message_ids', to_jsonb(v_ids)) END,
                    SQLSTATE || ': ' || SQLERRM, stagecast.enqueue_lock_wait());
    END;
    RETURN NULL;
END $$;

-- A gateway may first store an undecryptable stub and fill in the real message (with its ad
-- data) later: an UPDATE that changes the metadata is looked at too. The join is EXECUTEd.
CREATE OR REPLACE FUNCTION stagecast.chat_messages_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_ids bigint[];
BEGIN
    BEGIN
        EXECUTE 'SELECT array_agg(n.id)
                   FROM new_rows n JOIN old_rows o ON o.id = n.id
                  WHERE n.metadata IS DISTINCT FROM o.metadata
                    AND stagecast.may_carry_ad_data(n.direction, n.metadata)'
           INTO v_ids;
        IF v_ids IS NOT NULL THEN
            PERFORM stagecast.enqueue_inbound_messages(v_ids);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('attribution',
                    CASE WHEN v_ids IS NOT NULL THEN jsonb_build_object('message_ids', to_jsonb(v_ids)) END,
                    SQLSTATE || ': ' || SQLERRM, stagecast.enqueue_lock_wait());
    END;
    RETURN NULL;
END $$;

-- The utm_event normaliser (migration 20260212100000) with its one write, the problem report,
-- bounded like the enqueues. If the report cannot be written the value is still kept as written
-- and `stagecast doctor` still finds it (it parses every stage); the write never fails.
CREATE OR REPLACE FUNCTION stagecast.normalize_utm_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_problem text;
    v_lock_timeout text;
BEGIN
    IF NEW.utm_event IS NULL OR jsonb_typeof(NEW.utm_event) = 'null' THEN
        NEW.utm_event := '[]'::jsonb;
    ELSIF jsonb_typeof(NEW.utm_event) = 'object' THEN
        NEW.utm_event := jsonb_build_array(NEW.utm_event);
    ELSE
        BEGIN
            v_problem := stagecast.utm_event_problem(NEW.utm_event);
            IF v_problem IS NOT NULL THEN
                v_lock_timeout := current_setting('lock_timeout');
                PERFORM set_config('lock_timeout', stagecast.enqueue_lock_wait(), true);
                INSERT INTO stagecast.config_problems (source, row_id, problem, value)
                VALUES ('crm_stages.utm_event', NEW.id, v_problem, NEW.utm_event);
                PERFORM set_config('lock_timeout', v_lock_timeout, true);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stagecast: could not check utm_event of stage %: %', NEW.id, SQLERRM;
        END;
    END IF;
    RETURN NEW;
END $$;

-- Internal: called only from the functions above (which run as their owner).
REVOKE ALL ON FUNCTION stagecast.park_enqueue(text, jsonb, text, text) FROM PUBLIC;

-- ---- live jobs: old dedup keys → the change's key ---------------------------------------------

-- 'stage_change:<customer>:<stage>' becomes 'stage_change:<customer>:<stage>:<µs>' in every
-- status, so the pending index, replay's twin check and the re-queue compare like with like. The
-- new keys are more specific than the old ones, so they stay unique among pending jobs. One row
-- at a time: a payload whose changed_at does not parse (the worker fails such a job) keeps its
-- key instead of failing the migration.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, payload FROM stagecast.jobs
              WHERE kind = 'stage_change' AND dedup_key ~ '^stage_change:-?[0-9]+:-?[0-9]+$'
    LOOP
        BEGIN
            UPDATE stagecast.jobs
               SET dedup_key = coalesce(stagecast.stage_change_dedup_key((r.payload ->> 'customer_id')::bigint,
                                                                         (r.payload ->> 'to_stage_id')::bigint,
                                                                         (r.payload ->> 'changed_at')::timestamptz),
                                        dedup_key)
             WHERE id = r.id;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
END $$;
