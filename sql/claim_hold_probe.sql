-- A worker sends a held destination's probe: the next one is due $3 seconds from now, for every
-- worker (the probe is pushed back only if it was due, so two workers seldom both probe).
UPDATE stagecast.destination_holds
   SET next_probe = now() + make_interval(secs => $3)
 WHERE platform = $1 AND destination = $2 AND next_probe <= now()
