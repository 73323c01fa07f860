-- no-transaction
-- A CRM's INSERT into customer_contacts must not depend on stagecast's function privileges
-- (issue 12, finding 4). The phone-lookup index computed stagecast.phone_digits(value), and an
-- index expression runs as the role writing the row: once a deployment takes EXECUTE from
-- PUBLIC (ALTER DEFAULT PRIVILEGES ... REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC, a common
-- hardening step), every CRM insert failed with 42501. This index spells out the same
-- expression with built-in functions only (split_part, regexp_replace, nullif: immutable, in
-- pg_catalog, executable by everyone); sql/find_customers_by_phone.sql uses exactly this
-- expression so the lookup still uses the index. The old index is dropped by a later migration,
-- once this one exists.
--
-- CONCURRENTLY, so building it on a large CRM table does not block the CRM's writes (it waits
-- instead for transactions already open on the table to end); hence no transaction, and one
-- statement per migration. IF NOT EXISTS: the CRM's tables outlive a
-- reinstall of schema stagecast. A build interrupted midway leaves an INVALID index of this
-- name, which IF NOT EXISTS would keep: migration 20261201120102 refuses to go on until it is
-- dropped, so the lookup is never left without a usable index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customer_contacts_phone_lookup_idx
    ON public.customer_contacts ((nullif(regexp_replace(split_part(split_part(value, '@', 1), ':', 1), '\D', '', 'g'), '')))
