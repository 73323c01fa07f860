-- The CRM's bulk move: customers $1..$2 to stage $3, one statement.
UPDATE customers SET stage_id = $3 WHERE id BETWEEN $1 AND $2
