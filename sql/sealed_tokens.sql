-- Sealed tokens, for key rotation.
SELECT id, access_token_enc FROM stagecast.crm_pixels WHERE access_token_enc IS NOT NULL AND access_token_enc <> ''
