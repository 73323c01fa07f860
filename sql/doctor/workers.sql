-- The workers for `stagecast doctor`: every registered worker (stagecast.workers) and whether its
-- liveness lock is held (the lock: see the stagecast.workers migration), plus any worker that
-- runs jobs without a row (an older version, or one whose row a rescuer just removed), with
-- the jobs each runs. Its id is `<hostname>-<pid>-<random>` (src/queue/worker.rs,
-- new_worker_id). pg_locks and a table of one row per worker: cheap, and readable by the
-- worker's role.
WITH live AS (
    SELECT l.objid::bigint AS lock_key
      FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.classid = 1398036299::oid AND l.objsubid = 2 AND l.granted
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
), running AS (
    SELECT j.locked_by AS worker_id, count(*) AS jobs_running
      FROM stagecast.jobs j
     WHERE j.status = 'running' AND j.locked_by IS NOT NULL
     GROUP BY j.locked_by
)
SELECT coalesce(w.worker_id, r.worker_id)                     AS worker_id,
       (w.worker_id IS NOT NULL)                              AS registered,
       w.started_at,
       (w.lock_key IN (SELECT lock_key FROM live))            AS alive,
       w.lock_missing_since,
       coalesce(r.jobs_running, 0)                            AS jobs_running
  FROM stagecast.workers w
  FULL JOIN running r ON r.worker_id = w.worker_id
 ORDER BY w.started_at NULLS LAST, 1
