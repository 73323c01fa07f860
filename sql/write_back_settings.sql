-- Settings of one write-back transaction ($1 lock_timeout, $2 statement_timeout, e.g. '2000ms').
-- enable_nestloop off: write-back statements join thousands of outcomes against jobs whose
-- statistics are always stale (rows change state every few milliseconds). A nested loop over
-- the input then costs O(n²) (measured: 3.6 s instead of 30 ms for 4000 outcomes); hash joins
-- are always right here.
-- lock_timeout: our own statements hold job rows for milliseconds; a longer wait is someone
-- else's long transaction (an admin's, VACUUM FULL, a migration), and the write-back must fail
-- and isolate or retry rather than wait for it forever (issue 12, finding 5).
SELECT set_config('enable_nestloop', 'off', true),
       set_config('lock_timeout', $1, true),
       set_config('statement_timeout', $2, true)
