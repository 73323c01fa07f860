-- One campaign per pixel: campaign g sends to pixel g (1..$1).
INSERT INTO utm_campaigns (id, name, pixel_id)
SELECT g, 'Bench campaign ' || g, g FROM generate_series(1, $1::bigint) g
