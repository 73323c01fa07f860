-- The latest refused or retried event per destination over the last day (same window and cap
-- as destination_activity.sql), with the platform's answer as recorded in the audit.
SELECT DISTINCT ON (platform, destination)
       platform, destination, job_id, outcome, http_status, error, created_at
  FROM (SELECT platform, destination, job_id, outcome, http_status, error, created_at
          FROM stagecast.deliveries
         WHERE created_at >= now() - interval '1 day' AND outcome IN ('failed', 'retry')
         LIMIT 1000000) d
 ORDER BY platform, destination, created_at DESC
