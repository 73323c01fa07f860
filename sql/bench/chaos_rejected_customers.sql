-- Customers whose job failed on an event-level rejection (code 100, subcode 2804001). The
-- harness's events are valid, so such a failure is an injected rejection that met a request of
-- one event: failed as Meta would have it, not lost.
SELECT DISTINCT customer_id
  FROM stagecast.jobs
 WHERE status = 'failed' AND customer_id IS NOT NULL AND last_error LIKE '%subcode 2804001%'
