-- Write back a batch of outcomes, fenced: a row changes only if this worker still holds it at
-- the same attempt. A worker whose lease expired (and whose job was re-claimed) changes nothing.
-- $1 worker id; $2 jsonb array of {id, attempt, outcome, run_at, error, destinations}.
-- outcome: done (moved to job_archive) | retry | throttled | released (attempt refunded:
-- throttling and shutdown must not burn attempts) | failed.
WITH input AS (
    SELECT * FROM jsonb_to_recordset($2::jsonb)
        AS x(id bigint, attempt integer, outcome text, run_at timestamptz, error text, destinations text[])
), done AS (
    DELETE FROM stagecast.jobs j
     USING input u
     WHERE j.id = u.id AND u.outcome = 'done'
       AND j.locked_by = $1 AND j.attempts = u.attempt AND j.status = 'running'
    RETURNING j.id, j.kind, j.payload, j.attempts, j.customer_id,
              coalesce(u.destinations, j.destinations) AS destinations, j.created_at, u.error AS note
), archived AS (
    INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
    SELECT id, kind, payload, attempts, customer_id, destinations, created_at, note FROM done
    RETURNING 1
), updated AS (
    UPDATE stagecast.jobs j
       SET status = CASE WHEN u.outcome = 'failed' THEN 'failed' ELSE 'pending' END,
           attempts = CASE WHEN u.outcome IN ('throttled', 'released') THEN greatest(j.attempts - 1, 0)
                           ELSE j.attempts END,
           run_at = coalesce(u.run_at, now()),
           last_error = coalesce(u.error, j.last_error),
           locked_by = NULL,
           locked_until = NULL,
           destinations = coalesce(u.destinations, j.destinations),
           finished_at = CASE WHEN u.outcome = 'failed' THEN now() END,
           updated_at = now()
      FROM input u
     WHERE j.id = u.id AND u.outcome <> 'done'
       AND j.locked_by = $1 AND j.attempts = u.attempt AND j.status = 'running'
    RETURNING 1
)
SELECT (SELECT count(*) FROM archived) + (SELECT count(*) FROM updated) AS applied
