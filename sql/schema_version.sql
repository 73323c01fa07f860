-- Newest applied migration (readiness: are migrations current?).
-- Qualified: sessions pin search_path to pg_catalog (sql/pin_search_path.sql); sqlx keeps it in
-- the migrating owner's schema, public.
SELECT max(version) FROM public._sqlx_migrations WHERE success
