-- The ledger: events of these jobs ($1) already delivered. Read for every claimed job, also at
-- attempt 1: a throttle or a shutdown release gives the attempt back, and the events a run
-- delivered before it must not be sent again. By job (deliveries_job_idx), not by event id:
-- a job keeps its id through retries, refunds, rescues and replays, and an integer probe costs
-- a tenth of one on the text index under a libc collation (measured: 0.8 ms against 10 ms for
-- 1,000 jobs in a 200,000-row table).
SELECT job_id, event_id FROM stagecast.deliveries WHERE job_id = ANY($1::bigint[]) AND outcome = 'delivered'
