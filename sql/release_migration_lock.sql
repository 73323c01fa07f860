-- Release the lock taken by try_migration_lock.sql.
SELECT pg_catalog.pg_advisory_unlock(1398032195, 1)
