-- More of what Meta matches on (docs/events.md, "What is sent"), and per-pixel Conversion Leads,
-- Limited Data Use and opt-out (docs/crm-integration.md §5). Every new column is optional in
-- the data contract: the worker reads them by name from the view's row (to_jsonb), so a CRM
-- whose redefined views lack them keeps working (absent = NULL = not sent).

-- The browser's _fbp cookie value, when the CRM captured it (sent verbatim as user_data.fbp).
ALTER TABLE public.customers ADD COLUMN IF NOT EXISTS fbp text;
-- user_data.db and user_data.ge (hashed).
ALTER TABLE public.customers ADD COLUMN IF NOT EXISTS birth_date date;
ALTER TABLE public.customers ADD COLUMN IF NOT EXISTS gender text;
-- Meta Lead Ads id (leadgen_id, 15-17 digits) of a customer who came from an Instant Form.
ALTER TABLE public.customers ADD COLUMN IF NOT EXISTS lead_id text;

-- Conversion Leads: the CRM's name sent as custom_data.lead_event_source when the pixel's
-- action_source is system_generated.
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS lead_event_source text;
-- Limited Data Use: data_processing_options ["LDU"] with its country and state (0 = Meta
-- geolocates; 1 / 1000 = USA / California).
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS limited_data_use boolean NOT NULL DEFAULT false;
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS ldu_country integer;
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS ldu_state integer;
-- opt_out: true → Meta uses the events for attribution only, not for ad delivery optimisation.
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS opt_out boolean NOT NULL DEFAULT false;

-- Columns are appended, so CREATE OR REPLACE keeps everything that depends on the views. A
-- view a CRM redefined (it reads anything but stagecast's own table) is left as it is: the
-- worker reads the new columns when present, and replacing it would undo the adaptation.
DO $$
DECLARE
    v_view record;
BEGIN
    FOR v_view IN
        SELECT * FROM (VALUES
            ('stagecast.crm_customers', 'public.customers',
             'id, name, email, phone, stage_id, sale_price, currency, utm_campaign_id, utm_metadata, '
             'client_ip, client_user_agent, fbclid, fbclid_at, gclid, ttclid, city, state, zip, country, '
             'created_at, fbp, birth_date, gender, lead_id'),
            ('stagecast.crm_pixels', 'public.pixels',
             'id, platform, name, pixel_id, access_token, access_token_enc, active, is_default, '
             'waba_id, test_event_code, action_source, messaging_mode, '
             'lead_event_source, limited_data_use, ldu_country, ldu_state, opt_out')
        ) AS v(view_name, table_name, columns)
    LOOP
        IF (SELECT pg_catalog.array_agg(DISTINCT d.refobjid)
              FROM pg_catalog.pg_rewrite r
              JOIN pg_catalog.pg_depend d
                ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
             WHERE r.ev_class = v_view.view_name::regclass
               AND d.refobjid <> r.ev_class
               AND d.refclassid = 'pg_catalog.pg_class'::regclass)
           = ARRAY[v_view.table_name::regclass::oid] THEN
            EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %s AS SELECT %s FROM %s',
                                      v_view.view_name, v_view.columns, v_view.table_name);
        ELSE
            RAISE NOTICE '% was redefined for this CRM and is left as it is; its optional columns are read when present',
                v_view.view_name;
        END IF;
    END LOOP;
END $$;
