-- stagecast roles, part 2b, PostgreSQL 17 and newer (run as the owner after worker.sql).
-- MAINTAIN allows VACUUM, ANALYZE (and REINDEX, CLUSTER, REFRESH, LOCK) on a table without
-- owning it: the worker vacuums its hot tables when their dead rows pass autovacuum's threshold
-- (docs/operations.md "Vacuum"), and can do no DDL on them.
GRANT MAINTAIN ON TABLE stagecast.jobs, stagecast.job_archive, stagecast.deliveries,
                        stagecast.alerts, stagecast.enqueue_failures
   TO :"worker";
