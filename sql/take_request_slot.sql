-- A request slot for one destination, shared by every worker (GCRA, one statement): unless the
-- destination is paused, advance its theoretical arrival time (tat) by one emission interval and
-- say how long to wait before sending. $1 platform, $2 destination, $3 emission interval in
-- seconds (1 / requests per second), $4 burst tolerance in seconds (interval × (burst − 1)).
-- The slot is reserved even if the caller then waits: a cancelled wait wastes one slot, which
-- errs on the side of the limit. Times are the server's, so workers' clocks do not matter.
INSERT INTO stagecast.destination_limits AS l (platform, destination, tat)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (platform, destination) DO UPDATE
   SET tat = CASE WHEN l.paused_until > now() THEN l.tat
                  ELSE greatest(l.tat, now()) + make_interval(secs => $3) END
RETURNING
    CASE WHEN l.paused_until > now()
         THEN extract(epoch FROM l.paused_until - now())::float8 END AS paused_for,
    greatest(0, extract(epoch FROM l.tat - make_interval(secs => $3 + $4) - now()))::float8
        AS wait_for
