-- Live jobs by status (demo, bench and tests; Prometheus uses an index-only estimate instead).
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM stagecast.jobs
