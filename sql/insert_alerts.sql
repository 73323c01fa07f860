-- Record alerts once per (stage change, cause). Returns only the NEW alerts; the caller posts
-- them to chats with post_alerts.sql in the same transaction (a separate statement, because a
-- data-modifying CTE cannot see rows inserted by a sibling).
WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
        dedup_key text, job_id bigint, customer_id bigint, cause text, locale text, message text, details jsonb)
)
INSERT INTO stagecast.alerts (dedup_key, job_id, customer_id, cause, locale, message, details)
SELECT dedup_key, job_id, customer_id, cause, locale, message, coalesce(details, '{}'::jsonb) FROM input
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id, cause
