-- A burst of $1 stage-change jobs, as the CRM trigger writes them (dedup key included), for
-- `stagecast bench --analyze-drained-queue`.
INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
SELECT 'stage_change',
       jsonb_build_object('customer_id', g, 'to_stage_id', 1, 'changed_at', now()),
       g, stagecast.stage_change_dedup_key(g, 1, now())
  FROM generate_series(1, $1::bigint) g
