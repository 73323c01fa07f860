-- Shutdown, after the last write-back: give back every job this worker still holds (cut off by
-- the drain timeout, its outcome not written, its lease lost), attempt refunded: the work was
-- interrupted, not failed. The ledger, read at every claim, keeps what they delivered from
-- being sent again; a result that still arrives is fenced out.
-- A held job whose newer twin (same dedup key) is already pending cannot go back to pending
-- (the pending-dedup index is unique): it is archived as superseded instead, the twin carrying
-- the same work (see complete_jobs.sql). Returns how many jobs were given back either way.
WITH held AS (
    SELECT j.id,
           (SELECT t.id FROM stagecast.jobs t
             WHERE j.dedup_key IS NOT NULL AND t.dedup_key = j.dedup_key AND t.status = 'pending' AND t.id <> j.id
             LIMIT 1) AS twin
      FROM stagecast.jobs j
     WHERE j.locked_by = $1 AND j.status = 'running'
), superseded AS (
    DELETE FROM stagecast.jobs j
     USING held h
     WHERE j.id = h.id AND h.twin IS NOT NULL AND j.locked_by = $1 AND j.status = 'running'
    RETURNING j.id, j.kind, j.payload, j.attempts, j.customer_id, j.destinations, j.created_at,
              'superseded by job ' || h.twin || ', pending with the same work (released on shutdown)' AS note
), archived AS (
    INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
    SELECT id, kind, payload, attempts, customer_id, destinations, created_at, note FROM superseded
    RETURNING 1
), released AS (
    UPDATE stagecast.jobs j
       SET status = 'pending', attempts = greatest(j.attempts - 1, 0), locked_by = NULL, locked_until = NULL,
           run_at = now(), updated_at = now()
      FROM held h
     WHERE j.id = h.id AND h.twin IS NULL AND j.locked_by = $1 AND j.status = 'running'
    RETURNING 1
)
SELECT ((SELECT count(*) FROM released) + (SELECT count(*) FROM superseded))::bigint
