-- The ledger: which of these events ($1) were already delivered, whatever the attempt or the
-- job that delivered them. Read for every claimed job, also at attempt 1: a throttle or a
-- shutdown release gives the attempt back, and the events a run delivered before it must not
-- be sent again. One probe per event of the unique index deliveries_delivered_once_idx.
SELECT event_id FROM stagecast.deliveries WHERE event_id = ANY($1::text[]) AND outcome = 'delivered'
