-- Every event of a job, per attempt, as sent (PII already hashed, never a token) and as
-- answered, in the order they were recorded. $1 job id.
SELECT id, attempt, platform, destination, event_id, event_name, event_time, outcome, http_status,
       error_code, error_subcode, fbtrace_id, error, match_quality, request, response, created_at
  FROM stagecast.deliveries
 WHERE job_id = $1
 ORDER BY id
