-- Fast rescue of a dead worker's jobs (docs/operations.md, "Dead-worker rescue"). Each worker
-- process registers here at start and holds a session-level advisory lock keyed by `lock_key`
-- on a dedicated connection for its whole life. Postgres drops that lock the moment the session
-- ends (kill -9, OOM, a lost connection), so any other worker can see the death directly, within
-- a second, instead of waiting for the lease (60 s by default) to run out.
--
-- Only registered workers are rescued this way: a worker of an older version (no row, no lock)
-- keeps its jobs until their lease expires, as before, so a rolling upgrade steals nothing.
CREATE TABLE IF NOT EXISTS stagecast.workers (
    -- The `locked_by` of the jobs it claims (WorkerConfig::worker_id, unique per process start).
    worker_id        text PRIMARY KEY,
    -- The lock is pg_advisory_lock(1398036299, lock_key): "STWK" in the first key, so it never
    -- meets the migration lock ("STGC", 1) or another application's keys. An integer because
    -- the two-key form takes two int4.
    lock_key         integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    started_at       timestamptz NOT NULL DEFAULT now(),
    -- When a rescuer first saw the lock missing. The jobs are released only once it has stayed
    -- missing for the rescue grace: after a Postgres crash every lock vanishes at once, and live
    -- workers must get to re-take theirs before anyone counts them dead.
    lock_missing_since timestamptz
);
