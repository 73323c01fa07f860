-- The holds of one platform's destinations, for a worker's cache (refreshed about every second).
-- $1 platform. `probe_in` is in seconds (negative: due), so workers' clocks do not matter.
SELECT destination, fingerprint, cause, http_status, error_code, error_subcode, trace_id,
       message, extract(epoch FROM next_probe - now())::float8 AS probe_in
  FROM stagecast.destination_holds
 WHERE platform = $1
