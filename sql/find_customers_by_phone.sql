-- Customers whose contacts or phone match any of these digit strings (E.164 with and without
-- the Brazilian 9th digit, national forms, LID ids). Primary contacts first, then newest customer.
SELECT customer_id FROM (
    SELECT cc.customer_id, 0 AS rank, cc.is_primary
      FROM stagecast.crm_contacts cc
     WHERE stagecast.phone_digits(cc.value) = ANY($1::text[])
    UNION ALL
    SELECT cu.id, 1, false
      FROM stagecast.crm_customers cu
     WHERE stagecast.phone_digits(cu.phone) = ANY($1::text[])
) m
GROUP BY customer_id
ORDER BY min(rank), bool_or(is_primary) DESC, customer_id DESC
LIMIT 5
