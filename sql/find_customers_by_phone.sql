-- Customers whose contacts or phone match any of these digit strings (E.164 with and without
-- the Brazilian 9th digit, national forms, LID ids). Primary contacts first, then newest customer.
-- The digits expression is stagecast.phone_digits spelled out, because it must be exactly the
-- expression of the indexes customer_contacts_phone_lookup_idx and customers_phone_lookup_idx
-- (built-in functions only, so a CRM's insert never runs a stagecast function; see migration
-- 20261201120100). Change one, change all three (tests/privileges.rs checks the plan).
SELECT customer_id FROM (
    SELECT cc.customer_id, 0 AS rank, cc.is_primary
      FROM stagecast.crm_contacts cc
     WHERE nullif(regexp_replace(split_part(split_part(cc.value, '@', 1), ':', 1), '\D', '', 'g'), '') = ANY($1::text[])
    UNION ALL
    SELECT cu.id, 1, false
      FROM stagecast.crm_customers cu
     WHERE nullif(regexp_replace(split_part(split_part(cu.phone, '@', 1), ':', 1), '\D', '', 'g'), '') = ANY($1::text[])
) m
GROUP BY customer_id
ORDER BY min(rank), bool_or(is_primary) DESC, customer_id DESC
LIMIT 5
