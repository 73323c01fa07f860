-- Work the chaos run still waits for: live jobs not finished, and changes a trigger parked
-- (stagecast.enqueue_failures, re-queued by the workers' maintenance).
SELECT (SELECT count(*) FROM stagecast.jobs WHERE status IN ('pending', 'running'))
     + (SELECT count(*) FROM stagecast.enqueue_failures) AS outstanding,
       stagecast.lost_enqueues() AS lost_enqueues
