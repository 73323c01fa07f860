-- Customers the chaos run's CRM moved to the Purchase stage that the database still has.
SELECT count(*) FROM customers WHERE stage_id = $1
