-- Delivery errors in every platform's terms (issue 7): the audit stops naming Meta's fields.
-- The error code becomes text (Meta's codes are numbers, Google Ads' are names such as
-- RESOURCE_EXHAUSTED) and the trace id is `trace_id` (Meta's fbtrace_id, TikTok's request_id).
--
-- Why no ALTER COLUMN ... TYPE text: stagecast.deliveries takes one row per event per attempt
-- and keeps them 30 days (STAGECAST_RETENTION_AUDIT), millions of rows on a busy CRM. A type
-- change rewrites the table and every index under an ACCESS EXCLUSIVE lock for as long as the
-- rewrite takes, and meanwhile no worker can write back (the ledger included) and no admin can
-- read. Renaming a column and adding a nullable column without a default only change the
-- catalog: instant at any size. So:
--
-- - `error_code` bigint is renamed `legacy_error_code` (the codes of rows written before this
--   migration) and a new `error_code text` takes the codes from now on;
-- - `trace_id text` is added; `fbtrace_id` stays as it is.
--
-- Both keep a worker of the previous release writing during a rolling upgrade (migrations run
-- before the new workers roll out, docs/operations.md): its INSERT names `error_code` with a
-- bigint, which Postgres assigns to the text column as its decimal text, and `fbtrace_id`,
-- which still exists. Readers take `coalesce(error_code, legacy_error_code::text)` and
-- `coalesce(trace_id, fbtrace_id)` (sql/admin/job_deliveries.sql, docs/crm-integration.md).
-- Retention empties the two legacy columns within 30 days of the upgrade; a later migration can
-- then drop them, which is instant too.
--
-- Alert details (stagecast.alerts.details, jsonb) need no DDL: new alerts write `trace_id` and a
-- text `code`; older ones keep `fbtrace_id` and a numeric `code`, and sql/admin/job_alerts.sql
-- shows both the new way.
--
-- The catalog changes still take ACCESS EXCLUSIVE for an instant. Behind a long transaction on
-- the table the lock would wait, and every worker's write-back would queue behind it: the wait
-- is bounded instead, and the migration fails (re-run it) rather than stall the queue.
SET LOCAL lock_timeout = '5s';

ALTER TABLE stagecast.deliveries RENAME COLUMN error_code TO legacy_error_code;
ALTER TABLE stagecast.deliveries ADD COLUMN error_code text;
ALTER TABLE stagecast.deliveries ADD COLUMN trace_id text;

COMMENT ON COLUMN stagecast.deliveries.error_code IS
    'The platform''s error code as text (Meta: 190; Google Ads: RESOURCE_EXHAUSTED). Rows written before 20261201150000 hold it in legacy_error_code.';
COMMENT ON COLUMN stagecast.deliveries.trace_id IS
    'The platform''s id of the failed request, for its support (Meta: fbtrace_id). Rows written before 20261201150000 hold it in fbtrace_id.';
COMMENT ON COLUMN stagecast.deliveries.legacy_error_code IS
    'error_code of rows written before 20261201150000 (numeric Meta codes); read coalesce(error_code, legacy_error_code::text).';
COMMENT ON COLUMN stagecast.deliveries.fbtrace_id IS
    'trace_id of rows written before 20261201150000 (and by workers of earlier releases); read coalesce(trace_id, fbtrace_id).';
