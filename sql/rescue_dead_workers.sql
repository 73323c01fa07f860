-- Dead-worker rescue, run by every worker that holds its own lock, every rescue interval
-- (500 ms): release the jobs of registered workers whose liveness lock is gone, so the next claim
-- takes them up as expired leases (sql/claim_jobs.sql, `rescued`), seconds after the crash
-- instead of a lease later. $1: the rescue grace in seconds, $2: the restart grace in seconds.
-- Returns (jobs released, the dead workers forgotten).
--
-- Why it is safe to cut a lease short here: a live worker holds its lock for its whole life and
-- stops starting requests as soon as it cannot confirm it (src/queue/liveness.rs); a lock is
-- missing only once its session ended. Two guards cover every lock vanishing at once (a
-- Postgres restart or crash) while live workers still have requests in flight:
-- - a lock must be seen missing on two rescues at least $1 apart (lock_missing_since), and
-- - nothing is released in the first $2 seconds after the server started,
-- time for the live workers to reconnect and take their locks again (they retry every 250 ms,
-- WorkerConfig::lock_retry).
-- `updated_at < now()`: a worker that took its lock back after `live` was read can only have
-- claimed after this statement began (its claim's now() is later), and those jobs are its own.
--
-- Cost: pg_locks and a table of one row per worker, every 500 ms per worker. The jobs UPDATE
-- runs only when someone is dead (the EXISTS is a one-time filter), and then walks
-- jobs_lease_idx over the running jobs, never the pending backlog.
WITH live AS (
    SELECT l.objid::bigint AS lock_key
      FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.classid = 1398036299::oid AND l.objsubid = 2 AND l.granted
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
), seen AS (
    -- Only the rows whose state changes: a lock just found missing, or back.
    UPDATE stagecast.workers w
       SET lock_missing_since = CASE WHEN w.lock_key IN (SELECT lock_key FROM live) THEN NULL ELSE now() END
     WHERE (w.lock_key IN (SELECT lock_key FROM live)) = (w.lock_missing_since IS NOT NULL)
    RETURNING w.worker_id
), dead AS (
    -- Read from the snapshot, before `seen`: a lock first found missing now waits for a later run.
    SELECT w.worker_id
      FROM stagecast.workers w
     WHERE w.lock_missing_since < now() - make_interval(secs => $1::float8)
       AND w.lock_key NOT IN (SELECT lock_key FROM live)
       AND now() - pg_catalog.pg_postmaster_start_time() > make_interval(secs => $2::float8)
), released AS (
    -- The attempt the dead worker's claim spent is given back, up to 10 times a job
    -- (migrations/20261202140000_rescued_attempts_refunded.sql says why), by the claim that
    -- takes the job up as an expired lease (sql/claim_jobs.sql), as for any lease that expired.
    UPDATE stagecast.jobs j
       SET locked_until = now()
     WHERE EXISTS (SELECT 1 FROM dead)
       AND j.status = 'running' AND j.locked_until > now()
       AND j.locked_by IN (SELECT worker_id FROM dead)
       AND j.updated_at < now()
    RETURNING j.id
), forgotten AS (
    -- Its jobs are claimable now (expired leases need no worker row), so the row can go.
    DELETE FROM stagecast.workers w
     WHERE w.worker_id IN (SELECT worker_id FROM dead)
    RETURNING w.worker_id
)
SELECT (SELECT count(*) FROM released) AS released,
       coalesce((SELECT array_agg(worker_id ORDER BY worker_id) FROM forgotten), '{}') AS dead
