-- Jobs still in the queue, not failed (the benchmark's throttled destination's).
SELECT count(*) FROM stagecast.jobs WHERE status IN ('pending', 'running')
