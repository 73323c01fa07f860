-- A bulk change is queued as stage_change_batch jobs of at most `stagecast.stage_change_chunk`
-- customers each (default 5,000) instead of one job carrying every customer. Why:
-- * bounded worker memory: one 1,000,000-row UPDATE was one job whose payload (≈ 40 MB of
--   jsonb) the worker claimed and held whole; a chunk is ≈ 200 kB and is never claimed with its
--   payload (sql/claim_jobs.sql withholds large payloads), only expanded in SQL;
-- * first event fast: each chunk is expanded in its own statement and transaction, so the first
--   chunk's jobs are claimable (and delivered) while the rest is still being expanded;
-- * exactly once across crashes: a chunk is expanded and archived in one statement, fenced by
--   locked_by/attempts; a crash leaves each chunk either expanded (its jobs queued, deduplicated
--   by stagecast.stage_change_dedup_key) or still queued whole, never half.
-- Cost in the CRM's transaction: the same arrays as before, sliced, plus one job row per chunk
-- (200 rows for 1,000,000 customers), against one row before.
-- The chunk size is a setting the CRM's session reads (the trigger runs there, not in the
-- worker): `ALTER DATABASE crm SET stagecast.stage_change_chunk = 2000`; values outside
-- 1..1000000 or not a number mean the default.
CREATE OR REPLACE FUNCTION stagecast.stage_change_chunk() RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN s ~ '^[0-9]{1,7}$' AND s::integer BETWEEN 1 AND 1000000 THEN s::integer ELSE 5000 END
      FROM (SELECT coalesce(current_setting('stagecast.stage_change_chunk', true), '') AS s) v
$$;

CREATE OR REPLACE FUNCTION stagecast.enqueue_stage_changes(
    p_customer_ids bigint[],
    p_to_stage_ids bigint[],
    p_from_stage_ids bigint[] DEFAULT NULL,
    p_changed_at timestamptz DEFAULT statement_timestamp())
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_count integer := 0;
    v_lock_timeout text;
    v_wait text;
    v_chunk integer;
    v_n integer;
BEGIN
    IF coalesce(cardinality(p_customer_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- An explicit NULL means "now", like the default.
    p_changed_at := coalesce(p_changed_at, statement_timestamp());
    v_lock_timeout := current_setting('lock_timeout');
    v_wait := stagecast.enqueue_lock_wait();
    BEGIN
        PERFORM set_config('lock_timeout', v_wait, true);
        IF cardinality(p_customer_ids) = 1 THEN
            INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
            SELECT 'stage_change',
                   jsonb_build_object('customer_id', p_customer_ids[1],
                                      'from_stage_id', p_from_stage_ids[1],
                                      'to_stage_id', p_to_stage_ids[1],
                                      'changed_at', p_changed_at),
                   p_customer_ids[1],
                   stagecast.stage_change_dedup_key(p_customer_ids[1], p_to_stage_ids[1], p_changed_at)
              FROM stagecast.crm_stages s
             WHERE s.id = p_to_stage_ids[1]
               AND p_customer_ids[1] IS NOT NULL
               AND s.utm_event IS DISTINCT FROM '[]'::jsonb
            ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING;
        ELSE
            v_chunk := stagecast.stage_change_chunk();
            v_n := cardinality(p_customer_ids);
            -- One job per slice; slicing a local array is O(slice), so the whole is O(N) as
            -- before. from_stage_ids may be NULL (unknown): then every slice is NULL too.
            INSERT INTO stagecast.jobs (kind, payload)
            SELECT 'stage_change_batch',
                   jsonb_build_object('customer_ids', to_jsonb(p_customer_ids[lo:lo + v_chunk - 1]),
                                      'to_stage_ids', to_jsonb(p_to_stage_ids[lo:lo + v_chunk - 1]),
                                      'from_stage_ids', to_jsonb(p_from_stage_ids[lo:lo + v_chunk - 1]),
                                      'changed_at', p_changed_at)
              FROM generate_series(1, v_n, v_chunk) AS lo
             ORDER BY lo;
        END IF;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN OTHERS THEN
        PERFORM stagecast.park_enqueue('stage_change',
                    jsonb_build_object('customer_ids', to_jsonb(p_customer_ids),
                                       'to_stage_ids', to_jsonb(p_to_stage_ids),
                                       'from_stage_ids', to_jsonb(p_from_stage_ids),
                                       'changed_at', p_changed_at),
                    SQLSTATE || ': ' || SQLERRM, v_wait);
    END;
    RETURN v_count;
END $$;
