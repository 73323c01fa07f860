-- The two phone-lookup indexes built CONCURRENTLY by 20261201120100 and 20261201120101 must be
-- valid before the old ones are dropped (20261201120103, 20261201120104). An interrupted
-- CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS then keeps: stop here,
-- loudly, with the fix, rather than leave attribution's phone lookup on a sequential scan.
DO $$
DECLARE
    v_index text;
BEGIN
    FOREACH v_index IN ARRAY ARRAY['public.customer_contacts_phone_lookup_idx', 'public.customers_phone_lookup_idx'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indexrelid = pg_catalog.to_regclass(v_index) AND i.indisvalid) THEN
            RAISE EXCEPTION 'index % is missing or invalid (its CREATE INDEX CONCURRENTLY was interrupted)', v_index
                USING HINT = pg_catalog.format('Run DROP INDEX CONCURRENTLY IF EXISTS %s; then run stagecast migrate again.', v_index);
        END IF;
    END LOOP;
END $$;
