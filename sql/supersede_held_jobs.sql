-- Shutdown: the jobs this worker holds whose newer twin (same dedup key) is already pending
-- (release_held_jobs.sql left them): archived as done with the note "superseded by job N", the
-- twin carrying the same work (the same deterministic event ids; the ledger skips what these
-- delivered). See complete_jobs.sql for the same case at write-back. Returns how many.
WITH held AS (
    SELECT j.id,
           (SELECT t.id FROM stagecast.jobs t
             WHERE t.dedup_key = j.dedup_key AND t.status = 'pending' AND t.id <> j.id
             LIMIT 1) AS twin
      FROM stagecast.jobs j
     WHERE j.locked_by = $1 AND j.status = 'running' AND j.dedup_key IS NOT NULL
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
)
SELECT count(*) FROM archived
