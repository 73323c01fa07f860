-- The platform throttled a destination (or its usage is close to the limit): every worker's next
-- slot for it says "paused" until then. $1 platform, $2 destination, $3 pause in seconds. A
-- longer pause already recorded by another worker is kept.
INSERT INTO stagecast.destination_limits AS l (platform, destination, tat, paused_until)
VALUES ($1, $2, now(), now() + make_interval(secs => $3))
ON CONFLICT (platform, destination) DO UPDATE
   SET paused_until = greatest(l.paused_until, EXCLUDED.paused_until)
