-- Admin actions on jobs (DESIGN §1 "admin: CLI and SQL functions to list, inspect, replay,
-- cancel"): the audit of every request, and the functions a CRM admin screen calls. The
-- `stagecast jobs` CLI calls the same functions, so both paths validate, behave and are
-- audited alike. docs/operations.md ("Admin: inspecting and replaying jobs") is the guide.
--
-- Errors use standard SQLSTATEs so callers can tell them apart without parsing text:
--   no_data_found (P0002)                     the job does not exist (never queued, or pruned)
--   null_value_not_allowed (22004)            actor (or, for filters, reason) missing
--   invalid_parameter_value (22023)           unknown status, limit < 1
--   object_not_in_prerequisite_state (55000)  refused: a done job, or an identical stage
--                                             change already pending

-- Who asked what, when and why: one row per call that passed validation, even when it changed
-- nothing (count = 0). Dry runs change nothing and are not recorded. Not pruned by retention:
-- admin actions are rare and this is their only record.
CREATE TABLE IF NOT EXISTS stagecast.admin_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- Who asked, as the caller names them (the CRM user, or $USER for the CLI).
    actor       text NOT NULL,
    -- The database login that made the call: `actor` is the caller's word, this is not.
    db_role     text NOT NULL DEFAULT session_user,
    action      text NOT NULL,
    reason      text,
    -- By id: the job named. By filter: the jobs the call changed.
    job_ids     bigint[] NOT NULL DEFAULT '{}',
    -- By filter: the filter as given (NULL for calls by id).
    filter      jsonb,
    -- Jobs changed.
    count       integer NOT NULL,
    CONSTRAINT admin_audit_action_valid CHECK (action IN ('replay', 'cancel'))
);
-- "Who replayed job 42?" (`stagecast jobs show`).
CREATE INDEX IF NOT EXISTS admin_audit_job_ids_idx ON stagecast.admin_audit USING gin (job_ids);

-- The attempt budget of one run of a job, recorded by its first replay (NULL: never replayed,
-- max_attempts is the budget). A replay keeps `attempts` counting up and raises max_attempts to
-- attempts + budget instead of resetting attempts to 0, because:
-- * the worker consults the delivery ledger only from attempt 2 on (a first attempt has
--   delivered nothing), so a replayed job back at attempt 1 would re-send events an earlier
--   attempt delivered, and Meta could count them twice;
-- * write-back is fenced on (locked_by, attempts): a repeated attempt number would let a stale
--   attempt of a job cancelled while running write over the replayed one;
-- * the delivery audit keeps one attempt number per try.
-- Nullable with no default: adding it rewrites nothing, and the worker never reads it.
ALTER TABLE stagecast.jobs ADD COLUMN IF NOT EXISTS attempt_budget integer;

-- The filter shared by the replay and cancel functions and by `stagecast jobs list`
-- (sql/admin/list_jobs.sql), so a dry run, a list and the action agree on what matches.
-- p_pixel matches a destination exactly (`facebook:<pixel id>`) or by the pixel id after the
-- colon. Destinations are written by the worker, so a job that never ran matches no pixel.
-- p_since compares with created_at (when the stage change was queued).
-- Plain SQL without SET so the planner can inline it; it only calls pg_catalog functions,
-- which are searched first whatever the search_path.
CREATE OR REPLACE FUNCTION stagecast.admin_job_matches(
    p_kind text, p_pixel text, p_customer_id bigint, p_since timestamptz,
    j_kind text, j_destinations text[], j_customer_id bigint, j_created_at timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_kind IS NULL OR j_kind = p_kind)
       AND (p_customer_id IS NULL OR j_customer_id = p_customer_id)
       AND (p_since IS NULL OR j_created_at >= p_since)
       AND (p_pixel IS NULL
            OR EXISTS (SELECT 1 FROM unnest(j_destinations) AS d(dest)
                        WHERE d.dest = p_pixel OR split_part(d.dest, ':', 2) = p_pixel))
$$;

-- The checks below are VOLATILE (the default) on purpose: an IMMUTABLE function that raises
-- could be evaluated by the planner, in a branch that never runs.
CREATE OR REPLACE FUNCTION stagecast.admin_check_actor(p_actor text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_actor IS NULL OR btrim(p_actor) = '' THEN
        RAISE EXCEPTION 'actor is required: pass who is asking (the CRM user''s name or login)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION stagecast.admin_check_limit(p_limit integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_limit IS NOT NULL AND p_limit < 1 THEN
        RAISE EXCEPTION 'limit must be at least 1 (got %); leave it NULL for no limit', p_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION stagecast.admin_refuse_done(p_job_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '% never replayed: %',
                    CASE WHEN p_job_id IS NULL THEN 'done jobs are'
                         ELSE 'job ' || p_job_id || ' is done, and done jobs are' END,
                    'their events were delivered, and sending them again could make Meta count the conversions twice'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'To report the stage change again as a new conversion, queue it with '
                     'stagecast.enqueue_stage_change(customer_id, stage_id): a new job gets new event ids.';
END $$;

CREATE OR REPLACE FUNCTION stagecast.admin_filter_json(
    p_status text, p_kind text, p_pixel text, p_customer_id bigint, p_since timestamptz,
    p_limit integer, p_job_ids bigint[])
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'status', p_status, 'kind', p_kind, 'pixel', p_pixel, 'customer_id', p_customer_id,
        'since', p_since, 'limit', p_limit, 'job_ids', p_job_ids))
$$;

-- The jobs a replay with this filter would re-queue, in id order. One per dedup key, and none
-- whose identical stage change (same dedup key) is already pending: the queue allows one
-- pending job per key (jobs_dedup_pending_idx). Those stay as they are and can be replayed
-- once the pending one has run.
CREATE OR REPLACE FUNCTION stagecast.admin_replayable_ids(
    p_status text, p_kind text, p_pixel text, p_customer_id bigint, p_since timestamptz,
    p_limit integer, p_job_ids bigint[])
RETURNS bigint[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(picked.id ORDER BY picked.id), '{}')
      FROM (SELECT one.id
              FROM (SELECT DISTINCT ON (coalesce(j.dedup_key, 'id:' || j.id)) j.id
                      FROM stagecast.jobs j
                     WHERE j.status = p_status
                       AND (p_job_ids IS NULL OR j.id = ANY (p_job_ids))
                       AND stagecast.admin_job_matches(p_kind, p_pixel, p_customer_id, p_since,
                                                       j.kind, j.destinations, j.customer_id, j.created_at)
                       AND NOT EXISTS (SELECT 1 FROM stagecast.jobs t
                                        WHERE t.dedup_key = j.dedup_key AND t.status = 'pending')
                     ORDER BY coalesce(j.dedup_key, 'id:' || j.id), j.id) one
             ORDER BY one.id
             LIMIT p_limit) picked
$$;

-- Re-queue these jobs if they are still in p_status. Returns the ids re-queued.
CREATE OR REPLACE FUNCTION stagecast.admin_requeue_rows(p_ids bigint[], p_status text)
RETURNS bigint[] LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH requeued AS (
        UPDATE stagecast.jobs j
           SET status = 'pending',
               -- A job cancelled while an attempt was running keeps that attempt's lease (see
               -- cancel_job): wait for it to run out, so the two attempts do not send the same
               -- events at the same time. Otherwise now.
               run_at = greatest(now(), j.locked_until),
               attempt_budget = coalesce(j.attempt_budget, j.max_attempts),
               max_attempts = j.attempts + coalesce(j.attempt_budget, j.max_attempts),
               locked_by = NULL,
               locked_until = NULL,
               finished_at = NULL,
               updated_at = now(),
               -- Kept, marked, until the next attempt writes its own outcome.
               last_error = CASE WHEN j.last_error LIKE 'replayed: %' THEN j.last_error
                                 ELSE 'replayed: ' || coalesce(j.last_error, 'no error recorded') END
         WHERE j.id = ANY (p_ids) AND j.status = p_status
        RETURNING j.id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM requeued
$$;

-- admin_requeue_rows in one statement; if an identical stage change was queued meanwhile (a
-- unique violation on the pending dedup index), one job at a time, leaving those as they are.
CREATE OR REPLACE FUNCTION stagecast.admin_requeue(p_ids bigint[], p_status text)
RETURNS bigint[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_done bigint[] := '{}';
    v_id bigint;
BEGIN
    BEGIN
        RETURN stagecast.admin_requeue_rows(p_ids, p_status);
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
    FOREACH v_id IN ARRAY p_ids LOOP
        BEGIN
            v_done := v_done || stagecast.admin_requeue_rows(ARRAY[v_id], p_status);
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END LOOP;
    RETURN v_done;
END $$;

-- Replay one job: failed or cancelled → pending now, with a fresh attempt budget (see
-- attempt_budget above), lease cleared, last_error kept with the prefix "replayed: ".
-- The same job id means the same event ids, and events an earlier attempt delivered are
-- skipped (the delivery ledger), so a replay never double-sends what already reached Meta.
-- Returns true if re-queued, false if the job is already pending or running (nothing to do).
-- Raises for an unknown job, a done job (see admin_refuse_done) and a job whose identical
-- stage change is already pending.
CREATE OR REPLACE FUNCTION stagecast.replay_job(p_job_id bigint, p_actor text, p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job stagecast.jobs;
    v_twin bigint;
    v_done bigint[];
BEGIN
    PERFORM stagecast.admin_check_actor(p_actor);
    IF p_job_id IS NULL THEN
        RAISE EXCEPTION 'job id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO v_job FROM stagecast.jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM stagecast.job_archive WHERE id = p_job_id) THEN
            PERFORM stagecast.admin_refuse_done(p_job_id);
        END IF;
        RAISE EXCEPTION 'job % not found (it may have been pruned by retention)', p_job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    v_done := '{}';
    IF v_job.status IN ('failed', 'cancelled') THEN
        SELECT id INTO v_twin FROM stagecast.jobs
         WHERE dedup_key = v_job.dedup_key AND status = 'pending' LIMIT 1;
        -- Looked up first rather than caught after the update, to name the twin.
        IF v_twin IS NULL THEN
            v_done := stagecast.admin_requeue(ARRAY[p_job_id], v_job.status);
        END IF;
        IF cardinality(v_done) = 0 THEN
            RAISE EXCEPTION 'job % cannot be replayed now: an identical stage change (job %) is already pending',
                            p_job_id, coalesce(v_twin::text, 'queued meanwhile')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Replay it after the pending job has run, or cancel one of them.';
        END IF;
    ELSE
        RAISE NOTICE 'job % is already %: nothing to replay', p_job_id, v_job.status;
    END IF;
    INSERT INTO stagecast.admin_audit (actor, action, reason, job_ids, count)
    VALUES (btrim(p_actor), 'replay', nullif(btrim(p_reason), ''), ARRAY[p_job_id], cardinality(v_done));
    IF cardinality(v_done) > 0 THEN
        -- The jobs trigger notifies on INSERT only; wake the workers now, not at their next poll.
        PERFORM pg_notify('stagecast_jobs', '');
    END IF;
    RETURN cardinality(v_done) > 0;
END $$;

-- Replay every job matching a filter (NULL filter arguments match everything). Call with
-- named arguments:
--   SELECT stagecast.replay_jobs(p_pixel => '1111222233334444', p_since => '2026-11-01',
--                                p_actor => 'ana', p_reason => 'token renewed');
-- p_status: failed (default) or cancelled. p_limit: at most this many (lowest ids first).
-- p_job_ids: only among these jobs (a CRM screen's selection; the CLI's snapshot in chunks).
-- p_dry_run: return how many would be replayed, change nothing, record nothing.
-- Returns the number of jobs re-queued. p_reason is required (except for a dry run).
CREATE OR REPLACE FUNCTION stagecast.replay_jobs(
    p_status text DEFAULT 'failed',
    p_kind text DEFAULT NULL,
    p_pixel text DEFAULT NULL,
    p_customer_id bigint DEFAULT NULL,
    p_since timestamptz DEFAULT NULL,
    p_actor text DEFAULT NULL,
    p_reason text DEFAULT NULL,
    p_limit integer DEFAULT NULL,
    p_dry_run boolean DEFAULT false,
    p_job_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[];
    v_done bigint[];
BEGIN
    PERFORM stagecast.admin_check_actor(p_actor);
    PERFORM stagecast.admin_check_limit(p_limit);
    IF p_status = 'done' THEN
        PERFORM stagecast.admin_refuse_done(NULL);
    ELSIF p_status IN ('pending', 'running') THEN
        RAISE EXCEPTION '% jobs are already queued: there is nothing to replay (replay takes failed or cancelled)', p_status
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_status IS NULL OR p_status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'unknown status %: replay takes failed or cancelled', coalesce(quote_literal(p_status), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_ids := stagecast.admin_replayable_ids(p_status, p_kind, p_pixel, p_customer_id, p_since, p_limit, p_job_ids);
    IF coalesce(p_dry_run, false) THEN
        RETURN cardinality(v_ids);
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to replay jobs by filter (it is kept in stagecast.admin_audit)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_done := stagecast.admin_requeue(v_ids, p_status);
    INSERT INTO stagecast.admin_audit (actor, action, reason, job_ids, filter, count)
    VALUES (btrim(p_actor), 'replay', btrim(p_reason), v_done,
            stagecast.admin_filter_json(p_status, p_kind, p_pixel, p_customer_id, p_since, p_limit, p_job_ids),
            cardinality(v_done));
    IF cardinality(v_done) > 0 THEN
        PERFORM pg_notify('stagecast_jobs', '');
    END IF;
    RETURN cardinality(v_done);
END $$;

-- Cancel one job: pending, failed or running → cancelled, finished_at now (retention then
-- removes it like a failed job). A running job's lease is kept: its worker's write-back is
-- fenced on status = 'running' and changes nothing, and a later replay waits for that lease to
-- run out. The attempt in flight may still deliver events; they are recorded in
-- stagecast.deliveries as usual. Returns false (nothing changed) when the job is already
-- cancelled or done; raises for an unknown job.
CREATE OR REPLACE FUNCTION stagecast.cancel_job(p_job_id bigint, p_actor text, p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status text;
    v_changed boolean := false;
BEGIN
    PERFORM stagecast.admin_check_actor(p_actor);
    IF p_job_id IS NULL THEN
        RAISE EXCEPTION 'job id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT status INTO v_status FROM stagecast.jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM stagecast.job_archive WHERE id = p_job_id) THEN
            RAISE EXCEPTION 'job % not found (it may have been pruned by retention)', p_job_id
                USING ERRCODE = 'no_data_found';
        END IF;
        RAISE NOTICE 'job % is done: nothing to cancel', p_job_id;
    ELSIF v_status = 'cancelled' THEN
        RAISE NOTICE 'job % is already cancelled', p_job_id;
    ELSE
        UPDATE stagecast.jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
         WHERE id = p_job_id;
        v_changed := true;
    END IF;
    INSERT INTO stagecast.admin_audit (actor, action, reason, job_ids, count)
    VALUES (btrim(p_actor), 'cancel', nullif(btrim(p_reason), ''), ARRAY[p_job_id], v_changed::int);
    RETURN v_changed;
END $$;

-- Cancel every job matching a filter; the arguments are those of replay_jobs. p_status:
-- pending (default), failed or running. Jobs a worker is writing back at this very moment are
-- skipped rather than waited for (SKIP LOCKED: an admin action never stalls the workers); call
-- again to catch them. Returns the number of jobs cancelled.
CREATE OR REPLACE FUNCTION stagecast.cancel_jobs(
    p_status text DEFAULT 'pending',
    p_kind text DEFAULT NULL,
    p_pixel text DEFAULT NULL,
    p_customer_id bigint DEFAULT NULL,
    p_since timestamptz DEFAULT NULL,
    p_actor text DEFAULT NULL,
    p_reason text DEFAULT NULL,
    p_limit integer DEFAULT NULL,
    p_dry_run boolean DEFAULT false,
    p_job_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_done bigint[];
    v_count integer;
BEGIN
    PERFORM stagecast.admin_check_actor(p_actor);
    PERFORM stagecast.admin_check_limit(p_limit);
    IF p_status = 'done' THEN
        RAISE EXCEPTION 'done jobs cannot be cancelled: their events were delivered'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF p_status = 'cancelled' THEN
        RAISE EXCEPTION 'cancelled jobs are already cancelled (cancel takes pending, failed or running)'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_status IS NULL OR p_status NOT IN ('pending', 'failed', 'running') THEN
        RAISE EXCEPTION 'unknown status %: cancel takes pending, failed or running', coalesce(quote_literal(p_status), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_dry_run, false) THEN
        SELECT count(*) INTO v_count
          FROM (SELECT 1 FROM stagecast.jobs j
                 WHERE j.status = p_status
                   AND (p_job_ids IS NULL OR j.id = ANY (p_job_ids))
                   AND stagecast.admin_job_matches(p_kind, p_pixel, p_customer_id, p_since,
                                                   j.kind, j.destinations, j.customer_id, j.created_at)
                 LIMIT p_limit) m;
        RETURN v_count;
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to cancel jobs by filter (it is kept in stagecast.admin_audit)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    WITH picked AS (
        SELECT j.id FROM stagecast.jobs j
         WHERE j.status = p_status
           AND (p_job_ids IS NULL OR j.id = ANY (p_job_ids))
           AND stagecast.admin_job_matches(p_kind, p_pixel, p_customer_id, p_since,
                                           j.kind, j.destinations, j.customer_id, j.created_at)
         ORDER BY j.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), cancelled AS (
        UPDATE stagecast.jobs j
           SET status = 'cancelled', finished_at = now(), updated_at = now()
          FROM picked p
         WHERE j.id = p.id
        RETURNING j.id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_done FROM cancelled;
    INSERT INTO stagecast.admin_audit (actor, action, reason, job_ids, filter, count)
    VALUES (btrim(p_actor), 'cancel', btrim(p_reason), v_done,
            stagecast.admin_filter_json(p_status, p_kind, p_pixel, p_customer_id, p_since, p_limit, p_job_ids),
            cardinality(v_done));
    RETURN cardinality(v_done);
END $$;

-- These change the queue on behalf of whoever calls them (SECURITY DEFINER), so they are not
-- for every role that can reach the schema: the CRM's admin role is granted them explicitly
-- (docs/operations.md). The internal helpers are revoked too, so that nothing changes jobs
-- around the audit.
REVOKE ALL ON FUNCTION stagecast.replay_job(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stagecast.cancel_job(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stagecast.replay_jobs(text, text, text, bigint, timestamptz, text, text, integer, boolean, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION stagecast.cancel_jobs(text, text, text, bigint, timestamptz, text, text, integer, boolean, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION stagecast.admin_requeue(bigint[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stagecast.admin_requeue_rows(bigint[], text) FROM PUBLIC;
