SELECT id, access_token IS NOT NULL AS has_plaintext, left(access_token_enc, 12) AS sealed_prefix
  FROM pixels ORDER BY id
