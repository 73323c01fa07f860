-- All pixels (a handful per CRM): resolution picks the campaign's pixel or the default one.
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source, messaging_mode
  FROM stagecast.crm_pixels
 ORDER BY id
