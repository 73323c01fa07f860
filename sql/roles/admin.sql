-- stagecast roles, optional part: a role for a CRM admin screen or an operator's
-- `stagecast jobs` (list, show, replay, cancel). Run as the owner after migrate
-- (`stagecast roles apply --admin <role>`).
GRANT USAGE ON SCHEMA stagecast TO :"admin";
-- Replay and cancel are SECURITY DEFINER and audited: the role changes jobs only through them.
GRANT EXECUTE ON FUNCTION
    stagecast.replay_job(bigint, text, text),
    stagecast.cancel_job(bigint, text, text),
    stagecast.replay_jobs(text, text, text, bigint, timestamptz, text, text, integer, boolean, bigint[]),
    stagecast.cancel_jobs(text, text, text, bigint, timestamptz, text, text, integer, boolean, bigint[])
   TO :"admin";
-- `stagecast jobs list` and `show`: the jobs, their delivery attempts, alerts and admin actions,
-- selected with the same filter function as replay and cancel.
GRANT EXECUTE ON FUNCTION
    stagecast.admin_job_matches(text, text, bigint, timestamptz, text, text[], bigint, timestamptz)
   TO :"admin";
GRANT SELECT ON stagecast.jobs, stagecast.job_archive, stagecast.deliveries, stagecast.alerts,
                stagecast.admin_audit
   TO :"admin";
-- The admin console (docs/console.md) connects as this role too. Its stage form saves through
-- this audited SECURITY DEFINER function, the role's only write to a CRM table; its pages read
-- the stages, the pixels without their tokens, the campaigns and the recorded configuration
-- problems (the doctor's stage, pixel and campaign findings, from the doctor's own code).
GRANT EXECUTE ON FUNCTION
    stagecast.set_stage_events(bigint, jsonb, jsonb, text, text),
    stagecast.console_pixels()
   TO :"admin";
GRANT SELECT ON stagecast.crm_stages, stagecast.crm_campaigns, stagecast.config_problems
   TO :"admin";
