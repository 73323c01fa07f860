-- Queue health in one pass. The hot table only holds live and failed jobs (done jobs leave it
-- at completion), so counting it is cheap enough for a command run by hand.
SELECT count(*) FILTER (WHERE status = 'pending')                            AS pending,
       count(*) FILTER (WHERE status = 'running')                            AS running,
       count(*) FILTER (WHERE status = 'running' AND locked_until < now())   AS expired_leases,
       count(*) FILTER (WHERE status = 'failed')                             AS failed,
       max(finished_at) FILTER (WHERE status = 'failed')                     AS last_failed_at,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))::float8
                                                                             AS oldest_due_age_seconds,
       (SELECT count(*) FROM stagecast.enqueue_failures)                     AS parked,
       (SELECT min(created_at) FROM stagecast.enqueue_failures)              AS oldest_parked_at,
       (SELECT error FROM stagecast.enqueue_failures ORDER BY id DESC LIMIT 1) AS latest_parked_error,
       stagecast.lost_enqueues()                                             AS lost
  FROM stagecast.jobs
