-- Heartbeat: keep every job this worker holds leased (long rate-limit waits, slow APIs), except
-- $3, jobs held here that nobody works on any more (given up because their lease might have
-- lapsed, or whose outcome cannot be written): their lease must run out so that a claim takes
-- them up, instead of this worker holding them forever. A job another worker rescued is not
-- ours any more (locked_by) and is left alone.
UPDATE stagecast.jobs
   SET locked_until = now() + make_interval(secs => $2::float8)
 WHERE locked_by = $1 AND status = 'running' AND NOT (id = ANY($3::bigint[]))
