-- A worker found a held destination's probe due: claim it, so one worker sends it whatever how
-- many saw it due. The probe is pushed back $3 seconds, for every worker, only if it is still due:
-- a second worker's UPDATE waits on the first's row lock, then finds it no longer due. $1 platform,
-- $2 destination, $3 seconds until the next probe, $4 the fingerprint of the caller's
-- configuration. Answers 'probe' (this worker sends it), 'held' (another worker claimed it) or
-- 'open' (no hold for this configuration any more: lifted meanwhile).
WITH claimed AS (
    UPDATE stagecast.destination_holds
       SET next_probe = now() + make_interval(secs => $3)
     WHERE platform = $1 AND destination = $2 AND fingerprint = $4 AND next_probe <= now()
    RETURNING 1
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN 'probe'
            WHEN EXISTS (SELECT 1 FROM stagecast.destination_holds
                          WHERE platform = $1 AND destination = $2 AND fingerprint = $4)
            THEN 'held'
            ELSE 'open' END AS claim
