-- The chaos run's failed jobs, by error (a failure the platform made final is not a loss the
-- harness can blame on a kill, but it is still an event that did not arrive).
SELECT coalesce(last_error, '(no error)') AS error, count(*) AS jobs
  FROM stagecast.jobs
 WHERE status = 'failed'
 GROUP BY 1
 ORDER BY 2 DESC
 LIMIT 10
