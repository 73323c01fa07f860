-- Benchmark CRM: a Lead stage and a Purchase stage, one campaign. The pixel is inserted
-- separately (its token is sealed by the benchmark with a bound parameter).
INSERT INTO crm_stages (id, name, funnel_category, position, utm_event) VALUES
  (1, 'Lead', 'topo', 1, '[{"platform": "facebook", "event_name": "Lead"}]'),
  (2, 'Comprou', 'fundo', 2, '[{"platform": "facebook", "event_name": "Purchase", "use_sale_price": true}]');
