-- Bound of the heartbeat's transaction ($1, e.g. '1000ms'): a row held elsewhere is skipped
-- (extend_leases.sql), so what this bounds is a slow server or a table lock (an admin's LOCK
-- TABLE, a migration): the beat then fails instead of hanging, and the worker's lease clock
-- (which only credits beats that answered in time) stops new requests before a lease can lapse.
SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)
