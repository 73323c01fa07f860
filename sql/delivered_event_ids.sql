-- The ledger: events of these jobs already delivered by an earlier attempt (skipped on retry).
SELECT job_id, event_id FROM stagecast.deliveries WHERE job_id = ANY($1::bigint[]) AND outcome = 'delivered'
