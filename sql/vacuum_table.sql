-- VACUUM one table that vacuum_status.sql found past its threshold. {table} is that query's
-- qualified_name (format('%I.%I'), so quoted). ANALYZE too: with autovacuum off nothing else
-- refreshes the statistics the claim plan depends on (see the jobs table's comments).
-- SKIP_LOCKED: another worker (or autovacuum) already vacuuming it is enough; never queue
-- behind it. Sent as a simple query: VACUUM cannot run inside a transaction block.
VACUUM (SKIP_LOCKED, ANALYZE) {table}
