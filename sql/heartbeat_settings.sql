-- Bound of the heartbeat's transaction ($1, e.g. '1000ms'): a row lock held elsewhere or a
-- slow server fails the beat instead of hanging it, and the worker's lease clock (which only
-- credits beats that answered in time) stops new requests before the lease can lapse.
SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)
