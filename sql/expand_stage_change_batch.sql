-- Turn one `stage_change_batch` job (a bulk CRM UPDATE) into one `stage_change` job per
-- customer, with the same filters as stagecast.enqueue_stage_changes: stages with nothing
-- configured are skipped, and the same change (customer, stage and changed_at:
-- stagecast.stage_change_dedup_key) already pending is not queued twice; a customer's earlier,
-- different change to the same stage does not stop this one. Fenced like a completion; the
-- batch job moves to the archive in the same statement.
-- Leased at birth: the first $4 jobs are inserted already running, leased to this worker for
-- $5 seconds at attempt 1, as a claim would leave them, and returned, so the expanding worker
-- works on them without claiming them (the rest wait, pending, for any worker's claim). Per
-- event that saves the claim's UPDATE (a new row version, its index entries) and the pending
-- row's entries in jobs_claimable_idx and jobs_dedup_pending_idx, which the claim would only
-- have made dead. A leased row is outside the pending-only dedup index, so the ON CONFLICT
-- arbiter cannot see it: its dedup is the explicit probe of that index for a pending twin.
-- $4 is the capacity the worker has free ($4 = 0: all pending, as before).
-- $1 job id, $2 worker id, $3 attempt, $4 jobs to lease, $5 lease seconds. Returns one row per
-- leased job (id, kind, payload, max_attempts, created_at), or a single row with a NULL id when none
-- was; `created` and `archived` repeat on every row (`archived` = 0: fenced out).
WITH batch AS (
    DELETE FROM stagecast.jobs
     WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'running'
    -- Extract the arrays once: referring to `payload` per row would de-TOAST the whole
    -- (megabyte-sized) document for every customer, making the expansion quadratic.
    RETURNING id, kind, payload, attempts, customer_id, destinations, created_at,
              payload -> 'changed_at' AS changed_at,
              (payload ->> 'changed_at')::timestamptz AS changed_at_ts,
              payload -> 'customer_ids' AS customer_ids,
              payload -> 'to_stage_ids' AS to_stage_ids,
              CASE jsonb_typeof(payload -> 'from_stage_ids') WHEN 'array' THEN payload -> 'from_stage_ids'
                   ELSE '[]'::jsonb END AS from_stage_ids
), archived AS (
    INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
    SELECT id, kind, payload, attempts, customer_id, destinations, created_at, 'expanded' FROM batch
    RETURNING 1
), changes AS (
    SELECT b.id AS batch_id, b.changed_at, b.changed_at_ts,
           (c.customer_id #>> '{}')::bigint AS customer_id,
           (c.to_stage_id #>> '{}')::bigint AS to_stage_id,
           (c.from_stage_id #>> '{}')::bigint AS from_stage_id
      FROM batch b,
           ROWS FROM (jsonb_array_elements(b.customer_ids),
                      jsonb_array_elements(b.to_stage_ids),
                      jsonb_array_elements(b.from_stage_ids))
               AS c(customer_id, to_stage_id, from_stage_id)
), candidates AS (
    SELECT ch.*, row_number() OVER () AS n,
           stagecast.stage_change_dedup_key(ch.customer_id, ch.to_stage_id, ch.changed_at_ts) AS dedup_key
      FROM changes ch
      JOIN stagecast.crm_stages s ON s.id = ch.to_stage_id
     WHERE ch.customer_id IS NOT NULL
       AND s.utm_event IS DISTINCT FROM '[]'::jsonb
), leased AS (
    INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key, status, attempts, locked_by,
                                locked_until)
    SELECT 'stage_change',
           jsonb_build_object('customer_id', c.customer_id, 'from_stage_id', c.from_stage_id,
                              'to_stage_id', c.to_stage_id, 'changed_at', c.changed_at,
                              'batch_job_id', c.batch_id),
           c.customer_id, c.dedup_key, 'running', 1, $2,
           now() + make_interval(secs => $5::float8)
      FROM candidates c
     WHERE c.n <= $4
       -- A probe of jobs_dedup_pending_idx per row: the LIMIT keeps the planner from turning
       -- it into an anti-join, which it may plan as a scan of every pending job.
       AND (SELECT t.id FROM stagecast.jobs t
             WHERE t.dedup_key = c.dedup_key AND t.status = 'pending' LIMIT 1) IS NULL
    RETURNING id, kind, payload, max_attempts, created_at
), queued AS (
    INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
    SELECT 'stage_change',
           jsonb_build_object('customer_id', c.customer_id, 'from_stage_id', c.from_stage_id,
                              'to_stage_id', c.to_stage_id, 'changed_at', c.changed_at,
                              'batch_job_id', c.batch_id),
           c.customer_id, c.dedup_key
      FROM candidates c
     WHERE c.n > $4
    ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING
    RETURNING 1
), counts AS (
    SELECT (SELECT count(*) FROM leased) + (SELECT count(*) FROM queued) AS created,
           (SELECT count(*) FROM archived) AS archived
)
SELECT counts.created, counts.archived, l.id, l.kind, l.payload, l.max_attempts, l.created_at
  FROM counts LEFT JOIN leased l ON true
