-- Retention, in bounded batches so a large backlog never holds long locks.
-- $1 archive (done) retention seconds, $2 failed/cancelled retention, $3 audit retention, $4 batch.
WITH archive AS (
    DELETE FROM stagecast.job_archive
     WHERE id IN (SELECT id FROM stagecast.job_archive
                   WHERE finished_at < now() - make_interval(secs => $1::float8) LIMIT $4)
    RETURNING 1
), dead AS (
    DELETE FROM stagecast.jobs
     WHERE id IN (SELECT id FROM stagecast.jobs
                   WHERE status IN ('failed', 'cancelled')
                     AND finished_at < now() - make_interval(secs => $2::float8)
                   LIMIT $4 FOR UPDATE SKIP LOCKED)
    RETURNING 1
), audit AS (
    DELETE FROM stagecast.deliveries
     WHERE id IN (SELECT id FROM stagecast.deliveries
                   WHERE created_at < now() - make_interval(secs => $3::float8) LIMIT $4)
    RETURNING 1
), alerts AS (
    DELETE FROM stagecast.alerts
     WHERE id IN (SELECT id FROM stagecast.alerts
                   WHERE created_at < now() - make_interval(secs => $3::float8) LIMIT $4)
    RETURNING 1
)
SELECT (SELECT count(*) FROM archive) AS archive, (SELECT count(*) FROM dead) AS dead,
       (SELECT count(*) FROM audit) AS audit, (SELECT count(*) FROM alerts) AS alerts
