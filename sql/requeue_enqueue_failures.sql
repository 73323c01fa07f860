-- Re-queue work a CRM trigger could not queue (parked by the stagecast.enqueue_* functions),
-- through those same functions: the same filters, the same dedup key, the same bounded lock
-- waits (what still cannot be queued is parked again, with the new error).
-- A parked single stage change whose identical change (same customer, stage and changed_at) is
-- already known is dropped instead: it is a true duplicate, parked because it waited on that
-- twin (the same change inserted by a transaction not yet committed, or an admin's open
-- transaction on that job) and it must not be sent twice. Known means in the hot table in any
-- status (a pending twin would be coalesced anyway; a running, done, failed or cancelled one would
-- not), or archived since the change happened. Both lookups are one scan per call, only of
-- parked candidates' keys and customers (the BRIN index on finished_at limits the archive to its
-- recent end), and only while something is parked.
-- Returns (jobs queued, parked rows taken).
WITH parked AS (
    DELETE FROM stagecast.enqueue_failures
     WHERE id IN (SELECT id FROM stagecast.enqueue_failures ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
    RETURNING id, kind, payload
), calls AS (
    SELECT p.id, p.kind, p.payload, c.customer_ids, c.to_stage_ids, c.changed_at,
           CASE WHEN p.kind = 'stage_change' AND cardinality(c.customer_ids) = 1
                THEN stagecast.stage_change_dedup_key(c.customer_ids[1], c.to_stage_ids[1], c.changed_at)
           END AS single_key
      FROM parked p,
           LATERAL (SELECT ARRAY(SELECT jsonb_array_elements_text(p.payload -> 'customer_ids')::bigint) AS customer_ids,
                           ARRAY(SELECT jsonb_array_elements_text(p.payload -> 'to_stage_ids')::bigint) AS to_stage_ids,
                           (p.payload ->> 'changed_at')::timestamptz AS changed_at) c
), known AS (
    SELECT j.dedup_key AS key
      FROM stagecast.jobs j
     WHERE j.dedup_key IN (SELECT single_key FROM calls)
    UNION
    SELECT stagecast.stage_change_dedup_key(a.customer_id, (a.payload ->> 'to_stage_id')::bigint,
                                            (a.payload ->> 'changed_at')::timestamptz)
      FROM stagecast.job_archive a
     WHERE a.kind = 'stage_change'
       AND a.finished_at >= (SELECT min(changed_at) FROM calls WHERE single_key IS NOT NULL)
       AND a.customer_id IN (SELECT customer_ids[1] FROM calls WHERE single_key IS NOT NULL)
)
SELECT coalesce(sum(CASE
           WHEN kind = 'stage_change' AND single_key IN (SELECT key FROM known) THEN 0
           WHEN kind = 'stage_change' THEN stagecast.enqueue_stage_changes(
               customer_ids,
               to_stage_ids,
               CASE WHEN jsonb_typeof(payload -> 'from_stage_ids') = 'array'
                    THEN ARRAY(SELECT (e #>> '{}')::bigint FROM jsonb_array_elements(payload -> 'from_stage_ids') e)
               END,
               changed_at)
           WHEN kind = 'attribution' THEN stagecast.enqueue_inbound_messages(
               ARRAY(SELECT jsonb_array_elements_text(payload -> 'message_ids')::bigint))
           ELSE 0 END), 0)::bigint AS requeued,
       count(*) AS parked
  FROM calls
