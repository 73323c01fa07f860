-- The CRM moves one customer: customer $1 to stage $2.
UPDATE customers SET stage_id = $2 WHERE id = $1
