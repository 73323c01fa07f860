-- The no-op baseline's jobs: $1 rows shaped like the stage changes an expansion writes (same
-- payload size, a dedup key), of a kind no handler knows; they are only claimed and completed.
INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
SELECT 'noop',
       jsonb_build_object('customer_id', g, 'from_stage_id', NULL, 'to_stage_id', 2,
                          'changed_at', now(), 'batch_job_id', 0),
       g, 'noop:' || g
  FROM generate_series(1, $1::bigint) g
