-- The platform refused a destination's configuration: record the hold for every worker. Returns
-- whether this is news (no hold yet, or one for another configuration or cause), so exactly one
-- worker raises the alert: the upsert sees the row as the last writer left it (held_since keeps
-- its time when nothing changed, and `now()` is this statement's own).
-- $1 platform, $2 destination, $3 fingerprint, $4 cause, $5 http status, $6 code, $7 subcode,
-- $8 trace id, $9 message, $10 seconds until the next probe.
INSERT INTO stagecast.destination_holds AS h
       (platform, destination, fingerprint, cause, http_status, error_code, error_subcode,
        trace_id, message, next_probe, held_since)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10), now())
ON CONFLICT (platform, destination) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint,
       cause = EXCLUDED.cause,
       http_status = EXCLUDED.http_status,
       error_code = EXCLUDED.error_code,
       error_subcode = EXCLUDED.error_subcode,
       trace_id = EXCLUDED.trace_id,
       message = EXCLUDED.message,
       next_probe = EXCLUDED.next_probe,
       held_since = CASE WHEN h.fingerprint = EXCLUDED.fingerprint AND h.cause = EXCLUDED.cause
                         THEN h.held_since ELSE now() END
RETURNING held_since = now() AS news
