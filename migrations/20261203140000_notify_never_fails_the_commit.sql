-- The wake-up NOTIFY must never fail the CRM's commit. Postgres queues a notification at
-- commit, and when its notification queue (8 GB) is full the commit itself fails ("too many
-- notifications in the NOTIFY queue"), the CRM's transaction with it. The queue fills only
-- while some listening session sits in one transaction as notifications flow, but a CRM's
-- write must not depend on that. Past half full (where Postgres starts to warn about it) the
-- wake-up is skipped: workers poll for jobs anyway (`--poll-interval`, 1 s by default), so a
-- skipped NOTIFY delays a job by at most that. `stagecast.notify_queue_limit` (a fraction of
-- the queue) overrides the half; a value that is not a number is ignored, never an error.
CREATE OR REPLACE FUNCTION stagecast.notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_setting text := current_setting('stagecast.notify_queue_limit', true);
    v_limit float8 := 0.5;
BEGIN
    IF v_setting ~ '^\s*[0-9]*\.?[0-9]+\s*$' THEN
        v_limit := v_setting::float8;
    END IF;
    IF pg_notification_queue_usage() < v_limit THEN
        PERFORM pg_notify('stagecast_jobs', '');
    END IF;
    RETURN NULL;
END $$;
