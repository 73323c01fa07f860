-- A worker says it shares the limits, and learns how many do ($1 its id, $2 seconds a peer counts
-- as present): the share each falls back to when the database cannot be reached. Peers gone for
-- an hour are deleted. The count sees the table before this statement's own writes, hence the
-- "+ 1" for the caller.
WITH me AS (
    INSERT INTO stagecast.limit_peers (peer, seen_at) VALUES ($1, now())
    ON CONFLICT (peer) DO UPDATE SET seen_at = now()
), gone AS (
    DELETE FROM stagecast.limit_peers WHERE seen_at < now() - interval '1 hour'
)
SELECT (count(*) + 1)::bigint AS peers
  FROM stagecast.limit_peers
 WHERE peer <> $1 AND seen_at > now() - make_interval(secs => $2)
