-- All pixels, through the adapter view like the worker reads them. messaging_mode is not
-- needed by the doctor and does not exist before the WhatsApp attribution migration, so a
-- database with pending migrations can still be checked.
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source, NULL::text AS messaging_mode
  FROM stagecast.crm_pixels
 ORDER BY id
