-- no-transaction
-- The index replaced by customers_phone_lookup_idx (20261201120101).
DROP INDEX CONCURRENTLY IF EXISTS public.customers_phone_digits_idx
