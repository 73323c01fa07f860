-- The platform throttled a destination (or its usage is close to the limit): every worker's next
-- slot for it says "paused" until then. $1 platform, $2 destination, $3 the pause in seconds the
-- platform asked for (NULL: none), $4 the first pause in seconds, $5 the longest, $6 whether it
-- is a throttle (false: usage headers ran high; $3 is then the pause, and the streak is kept).
-- The streak (`throttles`) is shared: a throttle while the destination is still paused is the
-- same episode (another worker's request was in flight); one within $4 of the pause's end is
-- the next of a streak; a later one starts again at 1. Without a hint the pause is
-- $4 × 2^(streak − 1), at most $5. A longer pause already recorded is kept.
-- Returns the pause now in force (seconds from now) and the streak.
INSERT INTO stagecast.destination_limits AS l (platform, destination, tat, paused_until, throttles)
VALUES ($1, $2, now(), now() + make_interval(secs => coalesce($3::float8, $4::float8)), CASE WHEN $6 THEN 1 ELSE 0 END)
ON CONFLICT (platform, destination) DO UPDATE
   SET throttles = CASE WHEN NOT $6::bool THEN l.throttles
                        WHEN l.paused_until > now() THEN greatest(l.throttles, 1)
                        WHEN l.paused_until > now() - make_interval(secs => $4) THEN l.throttles + 1
                        ELSE 1 END,
       paused_until = greatest(
           l.paused_until,
           now() + make_interval(secs => coalesce($3, least($5, $4 * 2::float8 ^ least(8,
               CASE WHEN NOT $6 THEN 0
                    WHEN l.paused_until > now() THEN greatest(l.throttles, 1)
                    WHEN l.paused_until > now() - make_interval(secs => $4) THEN l.throttles + 1
                    ELSE 1 END - 1)::float8))))
RETURNING extract(epoch FROM l.paused_until - now())::float8 AS paused_for, l.throttles
