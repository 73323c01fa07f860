-- The enqueue API (DESIGN §1): what CRM triggers call. Another CRM calls these functions from
-- its own triggers. They never raise: a failure is parked in stagecast.enqueue_failures (and
-- re-queued by the worker) so the CRM's transaction always commits.

-- Wake listening workers. A payload-less notify is coalesced by Postgres within a transaction,
-- and the trigger is per statement, so a 100k-row bulk update sends one notification.
CREATE OR REPLACE FUNCTION stagecast.notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagecast_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER stagecast_jobs_notify
    AFTER INSERT ON stagecast.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION stagecast.notify_jobs();

-- Queue stage changes: parallel arrays, one element per customer.
-- * One change: one `stage_change` job, skipped when the stage has nothing configured
--   (utm_event = []) or when the same customer+stage change is already queued.
-- * Several changes (a bulk UPDATE): ONE `stage_change_batch` job carrying the arrays. Inserting
--   10k job rows inside the CRM's statement would double its cost; one row keeps a bulk UPDATE
--   within ~1.3x of the bare UPDATE. The worker expands the batch into `stage_change` jobs
--   (sql/expand_stage_change_batch.sql), applying the same filters, outside the CRM transaction.
-- Returns the number of jobs queued.
CREATE OR REPLACE FUNCTION stagecast.enqueue_stage_changes(
    p_customer_ids bigint[],
    p_to_stage_ids bigint[],
    p_from_stage_ids bigint[] DEFAULT NULL,
    p_changed_at timestamptz DEFAULT statement_timestamp())
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_count integer := 0;
BEGIN
    IF coalesce(cardinality(p_customer_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- An explicit NULL means "now", like the default.
    p_changed_at := coalesce(p_changed_at, statement_timestamp());
    BEGIN
        IF cardinality(p_customer_ids) = 1 THEN
            INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
            SELECT 'stage_change',
                   jsonb_build_object('customer_id', p_customer_ids[1],
                                      'from_stage_id', p_from_stage_ids[1],
                                      'to_stage_id', p_to_stage_ids[1],
                                      'changed_at', p_changed_at),
                   p_customer_ids[1],
                   'stage_change:' || p_customer_ids[1] || ':' || p_to_stage_ids[1]
              FROM stagecast.crm_stages s
             WHERE s.id = p_to_stage_ids[1]
               AND p_customer_ids[1] IS NOT NULL
               AND s.utm_event IS DISTINCT FROM '[]'::jsonb
            ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING;
        ELSE
            INSERT INTO stagecast.jobs (kind, payload)
            VALUES ('stage_change_batch',
                    jsonb_build_object('customer_ids', to_jsonb(p_customer_ids),
                                       'to_stage_ids', to_jsonb(p_to_stage_ids),
                                       'from_stage_ids', to_jsonb(p_from_stage_ids),
                                       'changed_at', p_changed_at));
        END IF;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        BEGIN
            INSERT INTO stagecast.enqueue_failures (kind, payload, error)
            VALUES ('stage_change',
                    jsonb_build_object('customer_ids', to_jsonb(p_customer_ids),
                                       'to_stage_ids', to_jsonb(p_to_stage_ids),
                                       'from_stage_ids', to_jsonb(p_from_stage_ids),
                                       'changed_at', p_changed_at),
                    SQLSTATE || ': ' || SQLERRM);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stagecast: could not queue stage changes nor park them: %', SQLERRM;
        END;
    END;
    RETURN v_count;
END $$;

-- Single-customer form, for CRMs with row-level triggers or application code.
CREATE OR REPLACE FUNCTION stagecast.enqueue_stage_change(
    p_customer_id bigint,
    p_to_stage_id bigint,
    p_from_stage_id bigint DEFAULT NULL,
    p_changed_at timestamptz DEFAULT statement_timestamp())
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT stagecast.enqueue_stage_changes(ARRAY[p_customer_id], ARRAY[p_to_stage_id], ARRAY[p_from_stage_id], p_changed_at)
$$;

-- Our own CRM contract's triggers: statement-level with transition tables, so a bulk UPDATE of
-- 10k customers costs one INSERT ... SELECT instead of 10k trigger calls.
CREATE OR REPLACE FUNCTION stagecast.customers_stage_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    BEGIN
        PERFORM stagecast.enqueue_stage_changes(array_agg(n.id), array_agg(n.stage_id), array_agg(o.stage_id))
           FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.stage_id IS DISTINCT FROM o.stage_id AND n.stage_id IS NOT NULL
         HAVING count(*) > 0;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'stagecast: stage change trigger failed: %', SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION stagecast.customers_stage_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    BEGIN
        PERFORM stagecast.enqueue_stage_changes(array_agg(n.id), array_agg(n.stage_id), NULL)
           FROM new_rows n
          WHERE n.stage_id IS NOT NULL
         HAVING count(*) > 0;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'stagecast: stage change trigger failed: %', SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE TRIGGER stagecast_customers_stage_updated
    AFTER UPDATE ON public.customers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stagecast.customers_stage_updated();

CREATE TRIGGER stagecast_customers_stage_inserted
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stagecast.customers_stage_inserted();
