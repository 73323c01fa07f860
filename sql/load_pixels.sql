-- All pixels (a handful per CRM): resolution picks the campaign's pixel or the default one.
-- `options`: the contract's optional pixel columns (docs/crm-integration.md §5), read by name
-- from the row so a redefined view without them still works (absent keys are NULL).
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source, messaging_mode,
       (SELECT jsonb_strip_nulls(jsonb_build_object(
                   'lead_event_source', j -> 'lead_event_source', 'limited_data_use', j -> 'limited_data_use',
                   'ldu_country', j -> 'ldu_country', 'ldu_state', j -> 'ldu_state', 'opt_out', j -> 'opt_out',
                   'conversion_action_id', j -> 'conversion_action_id',
                   'login_customer_id', j -> 'login_customer_id',
                   'ad_user_data_consent', j -> 'ad_user_data_consent'))
          FROM (SELECT to_jsonb(p) - 'access_token' - 'access_token_enc' AS j) r) AS options
  FROM stagecast.crm_pixels p
 ORDER BY id
