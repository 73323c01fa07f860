-- Shutdown, after the last write-back: give back every job this worker still holds (cut off by
-- the drain timeout, its outcome not written, its lease lost), attempt refunded: the work was
-- interrupted, not failed. The ledger, read at every claim, keeps what they delivered from
-- being sent again; a result that still arrives is fenced out.
UPDATE stagecast.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_by = NULL, locked_until = NULL,
       run_at = now(), updated_at = now()
 WHERE locked_by = $1 AND status = 'running'
