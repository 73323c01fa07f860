-- no-transaction
-- The index replaced by customer_contacts_phone_lookup_idx (20261201120100, checked by
-- 20261201120102): while it exists,
-- every CRM write to customer_contacts still calls stagecast.phone_digits.
DROP INDEX CONCURRENTLY IF EXISTS public.customer_contacts_phone_digits_idx
