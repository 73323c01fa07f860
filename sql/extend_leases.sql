-- Heartbeat: keep every job this worker holds leased (long rate-limit waits, slow APIs), except
-- $3, jobs held here that nobody works on any more (given up because their lease might have
-- lapsed, or whose outcome cannot be written): their lease must run out so that a claim takes
-- them up, instead of this worker holding them forever. A job another worker rescued is not
-- ours any more (locked_by) and is left alone.
-- A row locked elsewhere is skipped, not waited for (SKIP LOCKED): our own write-back finishing
-- the job (the common case, and the job is done anyway), an admin's SELECT ... FOR UPDATE, a
-- bulk expansion. Waiting, one such row made the whole beat time out and every lease of the
-- worker doubtful. The skipped ids are returned: their lease was not extended, and the worker
-- stops sending for one once its own lease might lapse (src/queue/lease.rs). FOR NO KEY UPDATE
-- is the lock the UPDATE takes anyway; unlike FOR UPDATE it does not skip a row whose key a
-- concurrent insert of a referencing row only shares.
-- One statement, one round trip: `ours` is read from the lease index once, then locked and
-- updated by primary key (`id = ANY`, as in claim_jobs.sql); `ours` is the statement's
-- snapshot, so a job finished meanwhile shows up as skipped, which only costs it its lease
-- extension.
WITH ours AS (
    SELECT id
      FROM stagecast.jobs
     WHERE locked_by = $1 AND status = 'running' AND NOT (id = ANY($3::bigint[]))
), locked AS (
    SELECT id
      FROM stagecast.jobs
     WHERE id = ANY((SELECT array_agg(id) FROM ours)::bigint[])
       AND locked_by = $1 AND status = 'running'
       FOR NO KEY UPDATE SKIP LOCKED
), extended AS (
    UPDATE stagecast.jobs
       SET locked_until = now() + make_interval(secs => $2::float8)
     WHERE id = ANY((SELECT array_agg(id) FROM locked)::bigint[])
    RETURNING id
)
SELECT (SELECT count(*) FROM extended) AS extended,
       -- A hashed set difference: `NOT (id = ANY(array))` per row was quadratic (125 ms for
       -- 4,000 jobs).
       coalesce((SELECT array_agg(id) FROM (SELECT id FROM ours EXCEPT ALL SELECT id FROM locked) s),
                '{}'::bigint[]) AS skipped
