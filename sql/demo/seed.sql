-- Demo CRM: stages with event configs (one legacy object, one typo, one sending to Meta, TikTok
-- and Google Ads), four pixels (Meta's with a plaintext token the worker will seal, an inactive
-- one, a TikTok CRM event set, a Google Ads conversion action with a plaintext OAuth refresh
-- token), campaigns, customers and their chats.
INSERT INTO crm_stages (id, name, funnel_category, position, utm_event) VALUES
  (1, 'Novo lead',      'topo',  1, '[]'),
  (2, 'Qualificado',    'meio',  2, '{"platform": "facebook", "event_name": "Lead"}'),
  (3, 'Agendou visita', 'meio',  3, '[{"platform": "facebook", "event_name": "Schedule", "enabled": true}]'),
  (4, 'Comprou',        'fundo', 4, '[{"platform": "facebook", "event_name": "Purchase", "enabled": true, "use_sale_price": true},
                                         {"platform": "tiktok", "event_name": "Purchase", "enabled": true, "use_sale_price": true},
                                         {"platform": "google_ads", "event_name": "Purchase", "enabled": true, "use_sale_price": true}]'),
  (5, 'Retorno',        'fundo', 5, '[{"platform": "facebook", "event_name": "Purchse"}]');

INSERT INTO pixels (id, platform, name, pixel_id, access_token, active, is_default, waba_id) VALUES
  (1, 'facebook', 'Pixel principal', '1234567890', 'EAADEMO-plaintext-token-written-by-the-crm', true, true, '555000111'),
  (2, 'facebook', 'Pixel antigo', '999000', 'EAADEMO-old-token', false, false, NULL),
  (3, 'tiktok', 'TikTok CRM', '7300000000000000001', 'TTDEMO-plaintext-token-written-by-the-crm', true, true, NULL);

INSERT INTO pixels (id, platform, name, pixel_id, access_token, active, is_default, conversion_action_id, ad_user_data_consent) VALUES
  (4, 'google_ads', 'Google Ads - Venda', '123-456-7890', '1//DEMO-plaintext-refresh-token-written-by-the-crm', true, true, '987654321', 'GRANTED');

INSERT INTO utm_campaigns (id, name, facebook_campaign_id, facebook_ad_ids, pixel_id) VALUES
  (1, 'Verão 2026', '120226300000000001', ARRAY['120226305854810726'], 1),
  (2, 'Campanha antiga', NULL, '{}', 2);

INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price, client_ip, utm_metadata) VALUES
  (1, 'Maria Souza',  'Maria.Souza@Example.com', '(11) 98765-4321', 1, 1490.00, '200.150.10.20', '{}'),
  (2, 'João Pereira', NULL, '+55 21 99876-5432', NULL, NULL, NULL,
      '{"source_id": "120226305854810726", "source_type": "ad", "ctwa_clid": "Aff-demo-ctwa-clid-0001",
        "ad_title": "Fale conosco", "ad_body": "Promoção de verão", "source_app": "instagram"}'),
  (3, 'Ana Lima',     'ana@example.com', '11 3333-4444', NULL, NULL, NULL, '{}'),
  (4, 'Pedro Alves',  'pedro@example.com', NULL, 2, NULL, NULL, '{}'),
  (5, 'Carla Dias',   'carla@example.com', '+55 11 91234-5678', 1, NULL, NULL, '{}'),
  (6, 'Bruno Costa',  'bruno@example.com', NULL, 1, 300.00, NULL, '{}');

UPDATE customers SET ttclid = 'E.C.P.demo-ttclid-0001', gclid = 'Cj0KCQiA-demo-gclid-0001' WHERE id = 1;

INSERT INTO customer_contacts (customer_id, kind, value, is_primary) VALUES
  (1, 'whatsapp', '5511987654321@s.whatsapp.net', true),
  (2, 'email', 'joao.pereira@example.com', true);

INSERT INTO chats (customer_id, channel, external_id)
SELECT id, 'whatsapp', 'demo-chat-' || id FROM customers;

SELECT setval(pg_get_serial_sequence('crm_stages', 'id'), 100);
SELECT setval(pg_get_serial_sequence('pixels', 'id'), 100);
SELECT setval(pg_get_serial_sequence('utm_campaigns', 'id'), 100);
SELECT setval(pg_get_serial_sequence('customers', 'id'), 100);
