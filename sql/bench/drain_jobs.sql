-- Empty the queue (the burst was worked off), leaving its dead rows and pages behind.
DELETE FROM stagecast.jobs
