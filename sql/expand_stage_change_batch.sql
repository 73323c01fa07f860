-- Turn one `stage_change_batch` job (a bulk CRM UPDATE) into one `stage_change` job per
-- customer, with the same filters as stagecast.enqueue_stage_changes: stages with nothing
-- configured are skipped, and the same change (customer, stage and changed_at:
-- stagecast.stage_change_dedup_key) already pending is not queued twice; a customer's earlier,
-- different change to the same stage does not stop this one. Fenced like a completion; the
-- batch job moves to the archive in the same statement.
-- $1 job id, $2 worker id, $3 attempt. Returns the number of jobs created (NULL row if fenced out).
WITH batch AS (
    DELETE FROM stagecast.jobs
     WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'running'
    -- Extract the arrays once: referring to `payload` per row would de-TOAST the whole
    -- (megabyte-sized) document for every customer, making the expansion quadratic.
    RETURNING id, kind, payload, attempts, customer_id, destinations, created_at,
              payload -> 'changed_at' AS changed_at,
              (payload ->> 'changed_at')::timestamptz AS changed_at_ts,
              payload -> 'customer_ids' AS customer_ids,
              payload -> 'to_stage_ids' AS to_stage_ids,
              CASE jsonb_typeof(payload -> 'from_stage_ids') WHEN 'array' THEN payload -> 'from_stage_ids'
                   ELSE '[]'::jsonb END AS from_stage_ids
), archived AS (
    INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
    SELECT id, kind, payload, attempts, customer_id, destinations, created_at, 'expanded' FROM batch
    RETURNING 1
), changes AS (
    SELECT b.id AS batch_id, b.changed_at, b.changed_at_ts,
           (c.customer_id #>> '{}')::bigint AS customer_id,
           (c.to_stage_id #>> '{}')::bigint AS to_stage_id,
           (c.from_stage_id #>> '{}')::bigint AS from_stage_id
      FROM batch b,
           ROWS FROM (jsonb_array_elements(b.customer_ids),
                      jsonb_array_elements(b.to_stage_ids),
                      jsonb_array_elements(b.from_stage_ids))
               AS c(customer_id, to_stage_id, from_stage_id)
), created AS (
    INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
    SELECT 'stage_change',
           jsonb_build_object('customer_id', ch.customer_id, 'from_stage_id', ch.from_stage_id,
                              'to_stage_id', ch.to_stage_id, 'changed_at', ch.changed_at,
                              'batch_job_id', ch.batch_id),
           ch.customer_id,
           stagecast.stage_change_dedup_key(ch.customer_id, ch.to_stage_id, ch.changed_at_ts)
      FROM changes ch
      JOIN stagecast.crm_stages s ON s.id = ch.to_stage_id
     WHERE ch.customer_id IS NOT NULL
       AND s.utm_event IS DISTINCT FROM '[]'::jsonb
    ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM created) AS created, (SELECT count(*) FROM archived) AS archived
