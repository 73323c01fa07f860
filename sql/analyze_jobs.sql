-- Fresh statistics after a bulk insert (batch expansion), so the claim walks its index instead
-- of sorting the whole backlog.
ANALYZE stagecast.jobs
