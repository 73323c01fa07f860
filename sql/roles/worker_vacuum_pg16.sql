-- stagecast roles, part 2b, PostgreSQL 16 and older (run as the owner after worker.sql).
-- The worker VACUUMs its hot tables itself when their dead rows pass autovacuum's threshold,
-- so they stay lean even with autovacuum off or lagging (the worker's maintenance; see
-- docs/operations.md "Vacuum"). Before PostgreSQL 17, only a table's owner (or the database
-- owner, or a superuser) may VACUUM or ANALYZE it, so the worker owns these five tables; the
-- owner keeps migrating them as a member of the worker role (setup.sql).
-- What ownership adds to the grants of worker.sql: DDL on these five tables only (ALTER, DROP,
-- GRANT to others, disabling their triggers). Their data was already the worker's to change and
-- delete; it gains nothing on the CRM's tables or on stagecast's other objects. On 17+, use
-- worker_vacuum_pg17.sql instead, which grants MAINTAIN and keeps ownership with the owner.
-- Postgres lets a table change hands only to a role that may CREATE in its schema. That right is
-- lent for the hand-over and taken back at once (this script runs in one transaction): the
-- worker must not create objects in schema stagecast.
GRANT CREATE ON SCHEMA stagecast TO :"worker";
ALTER TABLE stagecast.jobs OWNER TO :"worker";
ALTER TABLE stagecast.job_archive OWNER TO :"worker";
ALTER TABLE stagecast.deliveries OWNER TO :"worker";
ALTER TABLE stagecast.alerts OWNER TO :"worker";
ALTER TABLE stagecast.enqueue_failures OWNER TO :"worker";
REVOKE CREATE ON SCHEMA stagecast FROM :"worker";
