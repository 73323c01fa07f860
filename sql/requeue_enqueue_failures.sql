-- Re-queue stage changes a CRM trigger could not queue (parked by stagecast.enqueue_stage_changes).
WITH parked AS (
    DELETE FROM stagecast.enqueue_failures
     WHERE id IN (SELECT id FROM stagecast.enqueue_failures WHERE kind = 'stage_change'
                   ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
    RETURNING payload
)
SELECT coalesce(sum(stagecast.enqueue_stage_changes(
           ARRAY(SELECT jsonb_array_elements_text(payload -> 'customer_ids')::bigint),
           ARRAY(SELECT jsonb_array_elements_text(payload -> 'to_stage_ids')::bigint),
           CASE WHEN jsonb_typeof(payload -> 'from_stage_ids') = 'array'
                THEN ARRAY(SELECT (e #>> '{}')::bigint FROM jsonb_array_elements(payload -> 'from_stage_ids') e)
           END,
           (payload ->> 'changed_at')::timestamptz)), 0)::bigint AS requeued,
       count(*) AS parked
  FROM parked
