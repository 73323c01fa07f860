-- Newest applied migration (readiness: are migrations current?).
SELECT max(version) FROM _sqlx_migrations WHERE success
