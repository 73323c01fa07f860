-- The live jobs in one status that match a filter, lowest id first: the snapshot a bulk replay
-- or cancel from the CLI works through in chunks (passed back as p_job_ids), so every job is
-- acted on at most once per run even if it fails again meanwhile, and progress is exact.
-- $1 status, $2 kind, $3 pixel, $4 customer id, $5 created since, $6 limit (NULL: all).
SELECT j.id
  FROM stagecast.jobs j
 WHERE j.status = $1
   AND stagecast.admin_job_matches($2, $3, $4, $5, j.kind, j.destinations, j.customer_id, j.created_at)
 ORDER BY j.id
 LIMIT $6
