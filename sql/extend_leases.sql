-- Heartbeat: keep every job this worker holds leased (long rate-limit waits, slow APIs), except
-- $3, jobs whose outcome cannot be written: their lease must run out so they are rescued
-- instead of being held forever. A job another worker rescued is not ours any more
-- (locked_by) and is left alone.
UPDATE stagecast.jobs
   SET locked_until = now() + make_interval(secs => $2::float8)
 WHERE locked_by = $1 AND status = 'running' AND NOT (id = ANY($3::bigint[]))
