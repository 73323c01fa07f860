-- Take this worker's liveness lock for the session (a try: after a lost connection the old
-- session may not have ended on the server yet, and the worker tries again shortly). Session
-- level, so it outlives every transaction and goes only with the session. The keys: see the
-- stagecast.workers migration.
SELECT pg_catalog.pg_try_advisory_lock(1398036299, $1)
