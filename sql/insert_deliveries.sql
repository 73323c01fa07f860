-- Audit of every event sent, one row per attempt. The partial unique index on delivered
-- event_ids makes this the delivery ledger too; a re-send after a crash (same event_id) is
-- recorded once. Returns how many delivered rows were duplicates of an earlier delivery.
WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
        job_id bigint, attempt integer, platform text, destination text, pixel_ref bigint,
        event_id text, event_name text, event_time timestamptz, outcome text, http_status integer,
        error_code bigint, error_subcode bigint, fbtrace_id text, error text, match_quality real,
        request jsonb, response jsonb)
), ins AS (
    INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, pixel_ref, event_id, event_name,
                                      event_time, outcome, http_status, error_code, error_subcode, fbtrace_id,
                                      error, match_quality, request, response)
    SELECT job_id, attempt, platform, destination, pixel_ref, event_id, event_name, event_time, outcome,
           http_status, error_code, error_subcode, fbtrace_id, error, match_quality, request, response
      FROM input
    ON CONFLICT (event_id) WHERE outcome = 'delivered' DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM input) - (SELECT count(*) FROM ins) AS duplicates
