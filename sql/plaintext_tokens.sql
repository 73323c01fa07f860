-- Pixels whose token a CRM wrote in plaintext; the worker seals them.
SELECT id, access_token FROM stagecast.crm_pixels WHERE access_token IS NOT NULL AND access_token <> ''
