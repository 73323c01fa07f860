-- `stagecast jobs show`: one job, live or archived (a job is in exactly one of the two tables).
-- $1 job id.
SELECT j.id, j.kind, j.status, j.payload, j.attempts, j.max_attempts, j.attempt_budget, j.run_at,
       j.locked_by, j.locked_until, j.last_error, NULL::text AS note, j.dedup_key, j.customer_id,
       j.destinations, j.created_at, j.updated_at, j.finished_at
  FROM stagecast.jobs j
 WHERE j.id = $1
UNION ALL
SELECT a.id, a.kind, a.outcome, a.payload, a.attempts, NULL, NULL, NULL,
       NULL, NULL, NULL, a.note, NULL, a.customer_id,
       a.destinations, a.created_at, a.finished_at, a.finished_at
  FROM stagecast.job_archive a
 WHERE a.id = $1
