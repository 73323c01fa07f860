-- $1 Meta pixels (ids 1..$1, dataset ids 9000000000000001…) sharing one sealed token ($2).
INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default)
SELECT g, 'facebook', 'Bench pixel ' || g, (9000000000000000 + g)::text, $2, true, g = 1
  FROM generate_series(1, $1::bigint) g
