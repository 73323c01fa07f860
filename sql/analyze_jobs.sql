-- Fresh statistics after a bulk insert (batch expansion), so the claim walks its index instead
-- of sorting the whole backlog. SKIP_LOCKED: a table locked elsewhere (an admin's ACCESS
-- EXCLUSIVE, a migration) skips it instead of blocking the batch's handler behind that lock.
ANALYZE (SKIP_LOCKED) stagecast.jobs
