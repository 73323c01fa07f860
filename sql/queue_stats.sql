-- Backlog and lag per kind and status, for the Prometheus gauges. Run on a timer by the worker
-- (never per scrape), over at most 200k rows: the hot table only holds live and failed jobs,
-- so this stays cheap; a larger backlog is reported as the capped count.
SELECT kind, status, count(*) AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))::float8
           AS oldest_due_age_seconds
  FROM (SELECT kind, status, run_at FROM stagecast.jobs LIMIT 200000) j
 GROUP BY kind, status
