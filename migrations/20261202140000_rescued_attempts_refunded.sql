-- A worker killed (SIGKILL, OOM, a lost host) spends the attempt of every job it held, whether
-- or not a request for it ever left: attempts are counted when a job is claimed. In a crash loop
-- jobs would run out of attempts without one answer from the platform (`stagecast bench chaos`
-- showed 2,750 of 5,000 jobs given up after 49 kills at the default claim size). The dead-worker
-- rescue (sql/rescue_dead_workers.sql) now gives that attempt back by raising max_attempts, as a
-- replay does; `attempts` itself keeps growing, so fencing (locked_by + attempts) is unchanged.
-- `rescues` counts the refunds: after 10 a job pays for its kills again, so a job that kills its
-- worker every time (a poison payload) still ends, visibly, after max_attempts + 10 claims.
-- A constant default: on PostgreSQL 11+ this is a catalog change, no table rewrite.
ALTER TABLE stagecast.jobs ADD COLUMN IF NOT EXISTS rescues integer NOT NULL DEFAULT 0;
