-- Lease up to $1 jobs for worker $2 for $3 seconds ($4: largest payload returned, $5: chunks held).
-- Expired leases (a worker died or stalled) are reclaimed by this same query, so crash rescue
-- needs no separate sweeper (sql/rescue_dead_workers.sql only cuts a dead worker's leases short);
-- `rescued` tells the caller which ones (lease-expiry metric), and their attempt is refunded
-- (below; docs/operations.md, "Dead-worker rescue").
-- Each CTE is an optimisation fence (Oban's lesson): the LIMIT applies before the UPDATE.
-- Plan-proofing (the settings are in claim_settings.sql): the queue is often analyzed while
-- drained, and then the planner believes a burst of 100,000 jobs is an empty table. Joining the
-- picked rows back to jobs then became a nested loop over a full scan of jobs, once per picked
-- row (measured: 91 s instead of 22 ms for 1,000 claimed out of 100,000). So the UPDATE is
-- anchored on the primary key by `id = ANY(array of the picked ids)`, an index condition whatever
-- the statistics say; `rescued` is read from the array of the expired ones the same way.
-- Bounded in bytes as well as rows: a payload is returned only if it is at most $4 bytes
-- (stored, and as sent: jsonb travels as its text), else as JSON null, so a claim of $1 jobs
-- carries at most $1 × $4 bytes of payload whatever the backlog. The worker passes its claim
-- budget divided by its batch size (default 4 MiB / 1,000 ≈ 4 kB; a stage change is ≈ 200
-- bytes). What is withheld is a bulk change's chunk (≈ 200 kB for 5,000 customers), which the
-- worker never needs whole: sql/expand_stage_change_batch.sql reads it in the database.
-- pg_column_size is checked first: it reads the stored size without de-TOASTing, so a large
-- payload is never decompressed here.
-- Fair to the other workers: a bulk change's chunks (`stage_change_batch` jobs) are taken only
-- while worker $2 holds fewer than $5 of them unexpanded (at most $5 - held per claim). A worker
-- expands its chunks one at a time, so a claim that took all 200 chunks of a 1,000,000-row
-- UPDATE kept the other workers idle while it worked through them. Chunks are picked before the
-- stage changes (an expansion feeds every worker), and the stage changes without them, so the
-- LIMIT is never spent on chunks over the cap. The count and the pick both go through
-- jobs_chunks_idx, which holds only chunks: no claim walks a backlog of stage changes for them.
WITH expired AS (
    SELECT id
      FROM stagecast.jobs
     WHERE status = 'running' AND locked_until < now()
     ORDER BY locked_until
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), chunks AS (
    SELECT id
      FROM stagecast.jobs
     WHERE kind = 'stage_change_batch' AND status = 'pending' AND run_at <= now()
     ORDER BY run_at, id
     LIMIT greatest(0, least($1, $5::bigint - (
               SELECT count(*)
                 FROM stagecast.jobs
                WHERE kind = 'stage_change_batch' AND status = 'running' AND locked_by = $2)))
       FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id
      FROM stagecast.jobs
     WHERE status = 'pending' AND run_at <= now() AND kind <> 'stage_change_batch'
     ORDER BY run_at, id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, true AS rescued FROM expired
    UNION ALL
    SELECT id, false AS rescued FROM chunks
    UNION ALL
    SELECT id, false AS rescued FROM due
    LIMIT $1
)
UPDATE stagecast.jobs j
   SET status = 'running',
       locked_by = $2,
       locked_until = now() + make_interval(secs => $3::float8),
       attempts = j.attempts + 1,
       -- A rescued job's attempt was spent by a claim whose worker died or stalled, sent or
       -- not: given back up to 10 times a job (the dead-worker rescue only cuts the lease short
       -- and leaves the refund to this claim, so it is counted once, here, for both).
       rescues = j.rescues
                 + CASE WHEN j.id = ANY((SELECT array_agg(id) FROM picked WHERE rescued)::bigint[])
                        THEN 1 ELSE 0 END,
       max_attempts = j.max_attempts
                 + CASE WHEN j.id = ANY((SELECT array_agg(id) FROM picked WHERE rescued)::bigint[])
                             AND j.rescues < 10
                        THEN 1 ELSE 0 END,
       updated_at = now(),
       last_error = CASE WHEN j.id = ANY((SELECT array_agg(id) FROM picked WHERE rescued)::bigint[])
                         THEN 'lease expired: worker ' || coalesce(j.locked_by, '?') || ' stopped or stalled'
                         ELSE j.last_error END
 WHERE j.id = ANY((SELECT array_agg(id) FROM picked)::bigint[])
RETURNING j.id, j.kind,
          CASE WHEN pg_column_size(j.payload) <= $4 AND octet_length(j.payload::text) <= $4
               THEN j.payload ELSE 'null'::jsonb END AS payload,
          j.attempts, j.max_attempts, j.created_at,
          coalesce(j.id = ANY((SELECT array_agg(id) FROM picked WHERE rescued)::bigint[]), false) AS rescued
