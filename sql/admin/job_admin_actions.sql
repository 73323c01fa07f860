-- Replays and cancellations that named or changed a job (GIN index on job_ids). $1 job id.
SELECT id, at, actor, db_role, action, reason, filter, count
  FROM stagecast.admin_audit
 WHERE job_ids @> ARRAY[$1::bigint]
 ORDER BY id
