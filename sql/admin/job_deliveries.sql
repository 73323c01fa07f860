-- Every event of a job, per attempt, as sent (PII already hashed, never a token) and as
-- answered, in the order they were recorded. $1 job id. Rows written before migration
-- 20261201150000 hold their code and trace id in the legacy columns.
SELECT id, attempt, platform, destination, event_id, event_name, event_time, outcome, http_status,
       coalesce(error_code, legacy_error_code::text) AS error_code, error_subcode,
       coalesce(trace_id, fbtrace_id) AS trace_id, error, match_quality, request, response, created_at
  FROM stagecast.deliveries
 WHERE job_id = $1
 ORDER BY id
