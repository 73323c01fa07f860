-- Shutdown drain timed out: give back every job this worker still holds, attempt refunded
-- (the work was interrupted, not failed). A result that still arrives is fenced out.
UPDATE stagecast.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_by = NULL, locked_until = NULL,
       run_at = now(), updated_at = now()
 WHERE locked_by = $1 AND status = 'running'
