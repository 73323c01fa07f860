-- Re-queue work a CRM trigger could not queue (parked by the stagecast.enqueue_* functions).
WITH parked AS (
    DELETE FROM stagecast.enqueue_failures
     WHERE id IN (SELECT id FROM stagecast.enqueue_failures ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
    RETURNING kind, payload
)
SELECT coalesce(sum(CASE kind
           WHEN 'stage_change' THEN stagecast.enqueue_stage_changes(
               ARRAY(SELECT jsonb_array_elements_text(payload -> 'customer_ids')::bigint),
               ARRAY(SELECT jsonb_array_elements_text(payload -> 'to_stage_ids')::bigint),
               CASE WHEN jsonb_typeof(payload -> 'from_stage_ids') = 'array'
                    THEN ARRAY(SELECT (e #>> '{}')::bigint FROM jsonb_array_elements(payload -> 'from_stage_ids') e)
               END,
               (payload ->> 'changed_at')::timestamptz)
           WHEN 'attribution' THEN stagecast.enqueue_inbound_messages(
               ARRAY(SELECT jsonb_array_elements_text(payload -> 'message_ids')::bigint))
           ELSE 0 END), 0)::bigint AS requeued,
       count(*) AS parked
  FROM parked
