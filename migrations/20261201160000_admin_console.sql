-- The admin web console (issue 10; docs/console.md). The console connects as the admin role
-- (sql/roles/admin.sql), never as the CRM's: it reads what its pages show and changes jobs and
-- stage events only through audited SECURITY DEFINER functions.

-- The audit takes stage event edits too: the console's third action besides replay and cancel.
-- `details` holds what an action on something other than jobs changed (for a stage: its id and
-- the utm_event before and after); NULL for replays and cancels. Adding a nullable column
-- without a default rewrites nothing.
ALTER TABLE stagecast.admin_audit ADD COLUMN IF NOT EXISTS details jsonb;
ALTER TABLE stagecast.admin_audit DROP CONSTRAINT IF EXISTS admin_audit_action_valid;
ALTER TABLE stagecast.admin_audit ADD CONSTRAINT admin_audit_action_valid
    CHECK (action IN ('replay', 'cancel', 'set_stage_events'));

-- Pixels as the console shows them: everything but the token. `token_state` says whether a
-- token is there (sealed, or plaintext a worker has yet to seal) and `sealed_key_id` which key
-- sealed it (the `v1:<key id>:…` header of docs/secrets.md; key ids are not secret). Reads the
-- adapter view, so a CRM that redefines stagecast.crm_pixels is shown as the worker sees it.
-- A function rather than a view on the view: a view would depend on stagecast.crm_pixels and
-- stop a CRM from dropping and recreating it (docs/crm-integration.md §5). SECURITY DEFINER
-- because the admin role may not read crm_pixels (it holds the tokens).
CREATE OR REPLACE FUNCTION stagecast.console_pixels()
RETURNS TABLE (id bigint, platform text, name text, pixel_id text, active boolean,
               is_default boolean, waba_id text, test_events boolean, action_source text,
               token_state text, sealed_key_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.id::bigint, p.platform::text, p.name::text, p.pixel_id::text, p.active,
           p.is_default, p.waba_id::text,
           p.test_event_code IS NOT NULL AND btrim(p.test_event_code::text) <> '',
           p.action_source::text,
           CASE WHEN p.access_token IS NOT NULL AND btrim(p.access_token::text) <> '' THEN 'plaintext'
                WHEN p.access_token_enc IS NOT NULL AND btrim(p.access_token_enc::text) <> '' THEN 'sealed'
                ELSE 'missing' END,
           CASE WHEN split_part(btrim(p.access_token_enc::text), ':', 1) = 'v1'
                THEN nullif(split_part(btrim(p.access_token_enc::text), ':', 2), '') END
      FROM stagecast.crm_pixels p
     ORDER BY p.id
$$;
REVOKE EXECUTE ON FUNCTION stagecast.console_pixels() FROM PUBLIC;

-- Replace a stage's event configuration (crm_stages.utm_event), as the console's stage form
-- saves it: compare-and-set on the value the form was built from (a CRM user or another admin
-- who changed it meanwhile is not overwritten: 55000, reload), and one audit row with who, why,
-- and the value before and after. The console validates the entries with the worker's own
-- parser first; this checks the shape the queue's trigger relies on (an array of objects).
-- SECURITY DEFINER so the admin role needs no privilege on the CRM's table: this function is
-- the only write it can make there. Like the other adapter functions, a CRM whose stages live
-- elsewhere redefines it (docs/crm-integration.md).
-- Errors: P0002 no such stage, 22004 actor or reason missing, 22023 not an array of objects,
-- 55000 changed meanwhile.
CREATE OR REPLACE FUNCTION stagecast.set_stage_events(
    p_stage_id bigint, p_utm_event jsonb, p_expected jsonb, p_actor text, p_reason text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_before jsonb;
BEGIN
    PERFORM stagecast.admin_check_actor(p_actor);
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'reason is required: say why the stage''s events change (kept in stagecast.admin_audit)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_utm_event IS NULL OR jsonb_typeof(p_utm_event) <> 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_utm_event) e WHERE jsonb_typeof(e) <> 'object') THEN
        RAISE EXCEPTION 'utm_event must be an array of event config objects'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.utm_event INTO v_before FROM public.crm_stages s WHERE s.id = p_stage_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stage % not found', p_stage_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_before IS DISTINCT FROM p_expected THEN
        RAISE EXCEPTION 'stage % was changed by someone else meanwhile: nothing saved', p_stage_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Reload the stage and make the change again.';
    END IF;
    IF v_before IS NOT DISTINCT FROM p_utm_event THEN
        -- Nothing to change: recorded anyway (count 0), like a replay of a pending job.
        INSERT INTO stagecast.admin_audit (actor, action, reason, count, details)
        VALUES (btrim(p_actor), 'set_stage_events', btrim(p_reason), 0,
                jsonb_build_object('stage_id', p_stage_id, 'before', v_before, 'after', p_utm_event));
        RETURN false;
    END IF;
    UPDATE public.crm_stages SET utm_event = p_utm_event WHERE id = p_stage_id;
    INSERT INTO stagecast.admin_audit (actor, action, reason, count, details)
    VALUES (btrim(p_actor), 'set_stage_events', btrim(p_reason), 1,
            jsonb_build_object('stage_id', p_stage_id, 'before', v_before, 'after', p_utm_event));
    RETURN true;
END $$;
REVOKE EXECUTE ON FUNCTION stagecast.set_stage_events(bigint, jsonb, jsonb, text, text) FROM PUBLIC;
