-- The lock_timeout of the session that runs one VACUUM ($1, e.g. '1000ms'; '0' resets it to
-- none after the VACUUM). Session-level, not LOCAL: VACUUM cannot run in a transaction block.
-- SKIP_LOCKED already skips a table whose lock is taken when the VACUUM begins; this bounds
-- any other wait it makes (an index, the ANALYZE part) to the maintenance's lock bound.
SELECT set_config('lock_timeout', $1, false)
