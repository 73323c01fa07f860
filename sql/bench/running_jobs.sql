-- Jobs leased and not yet written back.
SELECT count(*) FROM stagecast.jobs WHERE status = 'running'
