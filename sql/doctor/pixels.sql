-- All pixels, through the adapter view like the worker reads them. messaging_mode is not
-- needed by the doctor and does not exist before the WhatsApp attribution migration, so a
-- database with pending migrations can still be checked; the optional columns are read by name
-- from the row for the same reason (as sql/load_pixels.sql does).
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source, NULL::text AS messaging_mode,
       (SELECT jsonb_strip_nulls(jsonb_build_object(
                   'lead_event_source', j -> 'lead_event_source', 'limited_data_use', j -> 'limited_data_use',
                   'ldu_country', j -> 'ldu_country', 'ldu_state', j -> 'ldu_state', 'opt_out', j -> 'opt_out',
                   'conversion_action_id', j -> 'conversion_action_id',
                   'login_customer_id', j -> 'login_customer_id',
                   'ad_user_data_consent', j -> 'ad_user_data_consent'))
          FROM (SELECT to_jsonb(p) - 'access_token' - 'access_token_enc' AS j) r) AS options
  FROM stagecast.crm_pixels p
 ORDER BY id
