-- move_one.sql on the trigger-less copy of customers.
UPDATE customers_bare SET stage_id = $2 WHERE id = $1
