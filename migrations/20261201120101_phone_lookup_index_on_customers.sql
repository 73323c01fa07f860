-- no-transaction
-- Same as 20261201120100, for customers.phone: the CRM's INSERT into customers no longer runs
-- a stagecast function (see there for CONCURRENTLY and IF NOT EXISTS).
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_phone_lookup_idx
    ON public.customers ((nullif(regexp_replace(split_part(split_part(phone, '@', 1), ':', 1), '\D', '', 'g'), '')))
