-- Every migration recorded as applied, to compare with the ones embedded in the binary.
SELECT version, description, success, checksum
  FROM public._sqlx_migrations
 ORDER BY version
