-- Jobs waiting for a later run: the throttled destination's, rescheduled after its pause.
SELECT count(*) FROM stagecast.jobs WHERE status = 'pending' AND run_at > now()
