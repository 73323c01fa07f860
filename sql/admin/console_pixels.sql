-- Every pixel without its token (stagecast.console_pixels()): the console's destinations page.
SELECT id, platform, name, pixel_id, active, is_default, waba_id, test_events, action_source,
       token_state, sealed_key_id
  FROM stagecast.console_pixels()
