-- Whether sqlx's bookkeeping table exists (resolved through search_path, as sqlx creates it):
-- without it the database was never migrated.
SELECT to_regclass('_sqlx_migrations') IS NOT NULL
