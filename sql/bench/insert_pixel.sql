INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default)
VALUES (1, 'facebook', 'Bench pixel', $1, $2, true, true);
