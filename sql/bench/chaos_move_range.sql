-- The chaos run's CRM write: customers $1..$2 to stage $3. Idempotent, so a statement whose
-- commit was lost with the connection (Postgres restarted) can be sent again without making a
-- second stage change.
UPDATE customers SET stage_id = $3 WHERE id BETWEEN $1 AND $2 AND stage_id IS DISTINCT FROM $3
