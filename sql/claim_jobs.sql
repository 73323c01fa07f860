-- Lease up to $1 jobs for worker $2 for $3 seconds.
-- Expired leases (a worker died or stalled) are reclaimed by this same query, so crash rescue
-- needs no separate sweeper; `rescued` tells the caller which ones (lease-expiry metric).
-- Each CTE is an optimisation fence (Oban's lesson): the LIMIT applies before the UPDATE.
WITH expired AS (
    SELECT id, true AS rescued
      FROM stagecast.jobs
     WHERE status = 'running' AND locked_until < now()
     ORDER BY locked_until
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id, false AS rescued
      FROM stagecast.jobs
     WHERE status = 'pending' AND run_at <= now()
     ORDER BY run_at, id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, rescued FROM expired
    UNION ALL
    SELECT id, rescued FROM due
    LIMIT $1
)
UPDATE stagecast.jobs j
   SET status = 'running',
       locked_by = $2,
       locked_until = now() + make_interval(secs => $3::float8),
       attempts = j.attempts + 1,
       updated_at = now(),
       last_error = CASE WHEN p.rescued
                         THEN 'lease expired: worker ' || coalesce(j.locked_by, '?') || ' stopped or stalled'
                         ELSE j.last_error END
  FROM picked p
 WHERE j.id = p.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.created_at, p.rescued
