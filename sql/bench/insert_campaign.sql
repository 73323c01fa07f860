INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (1, 'Bench campaign', 1);
