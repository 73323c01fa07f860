-- Pending jobs due later (a retry's backoff, or a throttled pixel's pause), per destination,
-- over at most 200k rows of the hot table like queue_stats.sql. Jobs get their destinations
-- when a worker resolves them, so jobs that never ran are not counted here.
SELECT d.dest AS destination, count(*) AS jobs, min(j.run_at) AS next_run_at
  FROM (SELECT destinations, run_at
          FROM stagecast.jobs
         WHERE status = 'pending' AND run_at > now()
         LIMIT 200000) j
 CROSS JOIN LATERAL unnest(j.destinations) AS d(dest)
 GROUP BY d.dest
 ORDER BY d.dest
