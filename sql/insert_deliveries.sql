-- Audit of every event sent, one row per attempt, bound as parallel arrays (one element per
-- row). The partial unique index on delivered event_ids makes this the delivery ledger too: a
-- re-send after a crash (same event_id) is recorded once. Returns how many delivered rows were
-- duplicates of an earlier delivery. error_code is text and trace_id the platform's request id
-- (migration 20261201150000: the legacy columns are not written any more).
WITH ins AS (
    INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, pixel_ref, event_id, event_name,
                                      event_time, outcome, http_status, error_code, error_subcode, trace_id,
                                      error, match_quality, request, response)
    SELECT job_id, attempt, platform, destination, pixel_ref, event_id, event_name, event_time, outcome,
           http_status, error_code, error_subcode, trace_id, error, match_quality, request::json, response::json
      FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                  $8::timestamptz[], $9::text[], $10::int[], $11::text[], $12::bigint[], $13::text[],
                  $14::text[], $15::real[], $16::text[], $17::text[])
           AS u(job_id, attempt, platform, destination, pixel_ref, event_id, event_name, event_time, outcome,
                http_status, error_code, error_subcode, trace_id, error, match_quality, request, response)
    ON CONFLICT (event_id) WHERE outcome = 'delivered' DO NOTHING
    RETURNING 1
)
SELECT cardinality($1::bigint[]) - (SELECT count(*) FROM ins) AS duplicates
