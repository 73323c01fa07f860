-- Bounds of one transaction's waits ($1 lock_timeout, $2 statement_timeout, e.g. '1000ms'),
-- LOCAL: they end with the transaction, so the pooled session keeps the server's defaults.
-- A lock someone else holds (an admin's open transaction, a migration, VACUUM FULL) then fails
-- the statement with SQLSTATE 55P03 instead of queueing the worker behind it for as long as
-- that transaction stays open; a slow statement fails with 57014.
SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)
