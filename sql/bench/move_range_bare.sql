-- move_range.sql on the trigger-less copy of customers.
UPDATE customers_bare SET stage_id = $3 WHERE id BETWEEN $1 AND $2
