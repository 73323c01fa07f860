-- The claim takes at most a few of a bulk change's chunks per worker (sql/claim_jobs.sql): it
-- counts the chunks the claiming worker holds and picks the due ones. Both through this index,
-- which holds only `stage_change_batch` jobs (one per 5,000 customers of a bulk UPDATE): without
-- it, finding the chunks would walk the claimable index past every stage change due before them
-- (100,000 after a burst) on every claim. The CRM's single stage changes are not in it, so their
-- inserts do not maintain it.
CREATE INDEX IF NOT EXISTS jobs_chunks_idx ON stagecast.jobs (status, run_at, id)
    WHERE kind = 'stage_change_batch';
