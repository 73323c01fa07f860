-- Google Ads consent (docs/google-ads.md, "Consent"): what the customers of a Google Ads
-- destination agreed to about their data being sent to Google, as ClickConversion.consent
-- adUserData (GRANTED or DENIED; NULL sends no consent). Optional for every other platform.
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS ad_user_data_consent text;

-- Appended to the adapter view, as for the previous optional columns; a redefined view is left
-- as it is and the worker reads the columns when present.
DO $$
DECLARE
    v_view record;
BEGIN
    FOR v_view IN
        SELECT * FROM (VALUES
            ('stagecast.crm_pixels', 'public.pixels',
             'id, platform, name, pixel_id, access_token, access_token_enc, active, is_default, '
             'waba_id, test_event_code, action_source, messaging_mode, '
             'lead_event_source, limited_data_use, ldu_country, ldu_state, opt_out, '
             'conversion_action_id, login_customer_id, ad_user_data_consent')
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
