-- Run on every connection of the shared limits' own small pool, after pin_search_path.sql: the
-- server gives up on a limit statement after $1 (e.g. '400ms') instead of letting it wait on a
-- lock or a slow server, so a connection is never left blocked, and the worker falls back to
-- its local share (docs/operations.md, "Rate limits, throttles and holds").
SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $1, false)
