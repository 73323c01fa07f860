-- Heartbeat: keep every job this worker holds leased (long rate-limit waits, slow APIs).
UPDATE stagecast.jobs
   SET locked_until = now() + make_interval(secs => $2::float8)
 WHERE locked_by = $1 AND status = 'running'
