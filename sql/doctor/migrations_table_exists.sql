-- Whether sqlx's bookkeeping table exists (in public, where the migrating owner's default
-- search_path puts it): without it the database was never migrated.
SELECT to_regclass('public._sqlx_migrations') IS NOT NULL
