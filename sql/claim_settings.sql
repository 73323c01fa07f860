-- Settings of the claim's transaction ($1 lock_timeout, $2 statement_timeout), LOCAL.
-- lock_timeout: other workers' claims skip locked rows and never make this one wait, so only a
-- table lock can (an admin's LOCK TABLE, a migration, VACUUM FULL); the producer then backs off
-- and claims again, and sees a shutdown in between.
-- enable_sort off: the worker ANALYZEs stagecast.jobs itself (after a batch expansion, and in
-- every VACUUM (ANALYZE) of its maintenance), often while the queue is drained. When a burst
-- follows, the planner believes the table is empty and, every pending-only partial index
-- looking equally cheap for one row, picks the due jobs by a full scan of the dedup index and
-- sorts the whole backlog. Sorting is never the right way to pick them: jobs_claimable_idx
-- returns them in (run_at, id) order. Measured after ANALYZE of the drained queue and a burst of
-- 100,000 jobs (PostgreSQL 15, 1,000 claimed): 115 ms with the sort (external merge on disk),
-- 22 ms without; tests/claim_plan.rs checks the shape.
SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true),
       set_config('enable_sort', 'off', true)
