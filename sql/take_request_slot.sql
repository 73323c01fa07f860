-- A request slot for one destination, shared by every worker (GCRA, one statement): unless the
-- destination is paused or held, advance its theoretical arrival time (tat) by one emission
-- interval and say how long to wait before sending. $1 platform, $2 destination, $3 emission
-- interval in seconds (1 / requests per second), $4 burst tolerance in seconds
-- (interval × (burst − 1)).
-- The slot is reserved even if the caller then waits: a cancelled wait wastes one slot, which
-- errs on the side of the limit. Times are the server's, so workers' clocks do not matter.
-- The hold check rides along: $5 the destination's hold key (NULL: not checked, e.g. for a
-- probe), $6 the fingerprint of the caller's configuration. A hold another worker recorded for
-- that configuration is returned (hold_* columns) and no slot is taken, so a worker whose cache
-- of holds (destination_holds.sql, read about every second) has not seen it yet sends nothing
-- either; only a request whose slot was taken before the hold was written can still go.
WITH hold AS (
    SELECT h.cause, h.http_status, h.error_code, h.error_subcode, h.trace_id, h.message,
           extract(epoch FROM h.next_probe - now())::float8 AS probe_in
      FROM stagecast.destination_holds h
     WHERE $5::text IS NOT NULL AND h.platform = $1 AND h.destination = $5 AND h.fingerprint = $6
), slot AS (
    INSERT INTO stagecast.destination_limits AS l (platform, destination, tat)
    VALUES ($1, $2, now() + make_interval(secs => $3))
    ON CONFLICT (platform, destination) DO UPDATE
       SET tat = CASE WHEN l.paused_until > now() OR EXISTS (SELECT 1 FROM hold) THEN l.tat
                      ELSE greatest(l.tat, now()) + make_interval(secs => $3) END
    RETURNING
        CASE WHEN l.paused_until > now()
             THEN extract(epoch FROM l.paused_until - now())::float8 END AS paused_for,
        greatest(0, extract(epoch FROM l.tat - make_interval(secs => $3 + $4) - now()))::float8
            AS wait_for
)
SELECT slot.paused_for, slot.wait_for,
       hold.cause AS hold_cause, hold.http_status AS hold_http_status,
       hold.error_code AS hold_error_code, hold.error_subcode AS hold_error_subcode,
       hold.trace_id AS hold_trace_id, hold.message AS hold_message, hold.probe_in AS hold_probe_in
  FROM slot LEFT JOIN hold ON true
