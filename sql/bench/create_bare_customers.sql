-- The bare side of the overhead measurement: a copy of customers with the same columns,
-- indexes, foreign keys and rows, but none of stagecast's triggers. Comparing the same UPDATE on
-- both tables in the same session measures what the trigger adds, whatever the session did
-- before (DISABLE TRIGGER would invalidate the session's cached plans and hide that).
CREATE TABLE customers_bare (LIKE customers INCLUDING ALL);
ALTER TABLE customers_bare ADD FOREIGN KEY (stage_id) REFERENCES crm_stages (id) ON DELETE SET NULL;
ALTER TABLE customers_bare ADD FOREIGN KEY (utm_campaign_id) REFERENCES utm_campaigns (id) ON DELETE SET NULL;
INSERT INTO customers_bare SELECT * FROM customers;
