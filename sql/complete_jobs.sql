-- Write back a batch of outcomes, fenced: a row changes only if this worker still holds it at
-- the same attempt. A worker whose lease expired (and whose job was re-claimed) changes nothing.
-- $1 worker id; $2.. parallel arrays, one element per job: id, attempt, outcome, run_at, error,
-- destinations (comma-separated). Returns (kind, outcome, jobs) for the outcomes applied.
-- outcome: done (moved to job_archive) | retry | throttled | held | released (attempt refunded:
-- throttling, a destination held for its configuration and shutdown must not burn attempts)
-- | failed.
-- Plan-proofing (measured: 3.6 s instead of 15 ms for 4000 rows with a bad plan): the input is
-- typed arrays, whose row count the planner knows, and every statement is anchored on the
-- primary key with `id = ANY($2)`, so stale statistics on the churning jobs table cannot turn
-- the join into a nested loop over the input.
-- Superseded: a job going back to pending (retry, throttled, released) while a newer twin with
-- its dedup key is already pending (the same change or message queued again while this one ran,
-- which the pending-only dedup index let through) would violate that unique index and fail the
-- whole write-back. The twin carries the same work (the same deterministic event ids; the
-- ledger skips what this job delivered), so this one is archived instead, as done with the note
-- "superseded by job N". The twin is found by a subquery per such job (a probe of
-- jobs_dedup_pending_idx), not a join: enable_nestloop is off here, and a hashed join would read
-- every pending job.
WITH input AS (
    SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::timestamptz[], $6::text[], $7::text[])
        AS u(id, attempt, outcome, run_at, error, destinations)
), superseded AS (
    SELECT s.id, s.twin
      FROM (SELECT j.id,
                   (SELECT t.id FROM stagecast.jobs t
                     WHERE t.dedup_key = j.dedup_key AND t.status = 'pending' AND t.id <> j.id
                     LIMIT 1) AS twin
              FROM stagecast.jobs j
              JOIN input u ON j.id = u.id
             WHERE j.id = ANY($2::bigint[]) AND u.outcome IN ('retry', 'throttled', 'released')
               AND j.dedup_key IS NOT NULL
               AND j.locked_by = $1 AND j.attempts = u.attempt AND j.status = 'running') s
     WHERE s.twin IS NOT NULL
), done AS (
    DELETE FROM stagecast.jobs j
     USING input u
     WHERE j.id = ANY($2::bigint[]) AND j.id = u.id
       AND (u.outcome = 'done' OR j.id IN (SELECT id FROM superseded))
       AND j.locked_by = $1 AND j.attempts = u.attempt AND j.status = 'running'
    RETURNING j.id, j.kind, j.payload, j.attempts, j.customer_id,
              coalesce(string_to_array(u.destinations, ','), j.destinations) AS destinations, j.created_at,
              CASE WHEN u.outcome = 'done' THEN u.error
                   ELSE 'superseded by job ' || (SELECT s.twin FROM superseded s WHERE s.id = j.id)
                        || ', pending with the same work' || coalesce(' (this attempt: ' || u.error || ')', '')
              END AS note
), archived AS (
    INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
    SELECT id, kind, payload, attempts, customer_id, destinations, created_at, note FROM done
    RETURNING 1
), updated AS (
    UPDATE stagecast.jobs j
       SET status = CASE WHEN u.outcome = 'failed' THEN 'failed' ELSE 'pending' END,
           attempts = CASE WHEN u.outcome IN ('throttled', 'held', 'released') THEN greatest(j.attempts - 1, 0)
                           ELSE j.attempts END,
           run_at = coalesce(u.run_at, now()),
           last_error = coalesce(u.error, j.last_error),
           locked_by = NULL,
           locked_until = NULL,
           destinations = coalesce(string_to_array(u.destinations, ','), j.destinations),
           finished_at = CASE WHEN u.outcome = 'failed' THEN now() END,
           updated_at = now()
      FROM input u
     WHERE j.id = ANY($2::bigint[]) AND j.id = u.id AND u.outcome <> 'done'
       AND j.id NOT IN (SELECT id FROM superseded)
       AND j.locked_by = $1 AND j.attempts = u.attempt AND j.status = 'running'
    RETURNING j.kind, u.outcome
)
-- Applied outcomes per (kind, outcome), for the jobs-completed metric; their sum is what was
-- applied (the rest was fenced out). `archived` runs although it is not read here: Postgres
-- executes every data-modifying WITH statement to completion.
SELECT kind, 'done' AS outcome, count(*) AS jobs FROM done GROUP BY kind
UNION ALL
SELECT kind, outcome, count(*) FROM updated GROUP BY kind, outcome
