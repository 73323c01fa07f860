-- Shutdown, after the last write-back: give back every job this worker still holds (cut off by
-- the drain timeout, its outcome not written, its lease lost), attempt refunded: the work was
-- interrupted, not failed. The ledger, read at every claim, keeps what they delivered from
-- being sent again; a result that still arrives is fenced out.
-- A held job whose newer twin (same dedup key) is already pending cannot go back to pending
-- (the pending-dedup index is unique): it is left here and counted in `superseded`, for
-- supersede_held_jobs.sql to archive. That statement runs only when there are some: it writes
-- job_archive, and giving back jobs must not wait for a lock on the archive (a locked archive is
-- a reason the write-back failed in the first place).
-- Returns (released, superseded).
WITH released AS (
    UPDATE stagecast.jobs j
       SET status = 'pending', attempts = greatest(j.attempts - 1, 0), locked_by = NULL, locked_until = NULL,
           run_at = now(), updated_at = now()
     WHERE j.locked_by = $1 AND j.status = 'running'
       AND NOT (j.dedup_key IS NOT NULL AND EXISTS (
               SELECT 1 FROM stagecast.jobs t
                WHERE t.dedup_key = j.dedup_key AND t.status = 'pending' AND t.id <> j.id))
    RETURNING 1
)
SELECT (SELECT count(*) FROM released) AS released,
       (SELECT count(*) FROM stagecast.jobs j
         WHERE j.locked_by = $1 AND j.status = 'running' AND j.dedup_key IS NOT NULL
           AND EXISTS (SELECT 1 FROM stagecast.jobs t
                        WHERE t.dedup_key = j.dedup_key AND t.status = 'pending' AND t.id <> j.id)) AS superseded
