-- VACUUM must not truncate the tables the CRM's triggers write. Truncating the empty pages at
-- a table's end takes ACCESS EXCLUSIVE on it for the backward scan of its tail (VACUUM takes the
-- lock only if it is free, but then holds it): the queue drains to an empty tail after every
-- burst, so the workers' own VACUUM of stagecast.jobs (and autovacuum's) truncated it regularly,
-- and a CRM transaction queueing a stage change meanwhile waited for that lock past the trigger's
-- lock wait (50 ms at most) and parked the change in stagecast.enqueue_failures. Parked changes
-- are re-queued, but up to a maintenance tick later and at the cost of a second write.
-- Keeping the pages costs nothing worth having: the freed pages are reused by the next burst
-- (the free space map), and the file does not grow past its busiest size.
-- stagecast.enqueue_failures (where the trigger parks) and stagecast.config_problems (where it
-- records a bad stage config) are written by the same trigger, under the same lock wait.
ALTER TABLE stagecast.jobs SET (vacuum_truncate = false);
ALTER TABLE stagecast.enqueue_failures SET (vacuum_truncate = false);
ALTER TABLE stagecast.config_problems SET (vacuum_truncate = false);
