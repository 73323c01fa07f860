-- $1 customers spread round-robin over $2 campaigns: customer g is in campaign (g % $2) + 1.
INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price, client_ip)
SELECT g, 'Cliente ' || g, 'cliente' || g || '@example.com',
       '+55 11 9' || lpad(g::text, 8, '0'), (g % $2::bigint) + 1, 100 + (g % 900),
       '200.150.' || (g % 250) || '.' || (g % 200)
  FROM generate_series(1, $1::bigint) g
