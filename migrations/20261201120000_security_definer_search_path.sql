-- Security definer functions are not an escalation path (issue 12, finding 3).
--
-- They ran with search_path = pg_catalog, public. Function and operator resolution picks the
-- best argument-type match over the whole path, and an exact match beats a polymorphic
-- built-in whatever the schema order: a CRM role with CREATE on public that created
-- public.cardinality(bigint[]) or an aggregate public.array_agg(bigint) had it called by the
-- stage-change trigger with the owner's privileges (reproduced: the owner was a superuser, the
-- CRM role made itself one). With pg_catalog, pg_temp nothing a CRM can create is on the path
-- (pg_temp is never searched for functions or operators), and every body names its tables,
-- views and functions with their schema.
--
-- Generic on purpose, and placed after every earlier migration: whichever migration defined a
-- SECURITY DEFINER function of this schema, it gets the fixed path, and its EXECUTE privilege
-- is taken from PUBLIC. Who may call which function is granted by role (sql/roles/*.sql,
-- docs/operations.md "Database roles"): trigger functions need no grant (Postgres checks
-- EXECUTE when the trigger is created, not when it fires); the enqueue functions are for the
-- worker (it re-queues parked changes) and for whatever role a deployment's own triggers run
-- as; the admin functions for the admin role. tests/privileges.rs checks that no SECURITY
-- DEFINER function of the schema escapes these rules, so a later migration cannot regress.

-- The adapter's write functions (the worker's only writes to CRM tables) run as their owner
-- too: the worker role then needs EXECUTE on them and no privilege on any CRM table, and can
-- write the CRM only in the ways these functions allow (post a system message, seal a token
-- under compare-and-set, record a first touch). Their bodies already qualify every name.
ALTER FUNCTION stagecast.write_chat_alert(bigint, text, jsonb) SECURITY DEFINER;
ALTER FUNCTION stagecast.store_sealed_token(bigint, text, text) SECURITY DEFINER;
ALTER FUNCTION stagecast.replace_sealed_token(bigint, text, text) SECURITY DEFINER;
ALTER FUNCTION stagecast.record_first_touch(bigint, jsonb, bigint) SECURITY DEFINER;

DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'stagecast'::regnamespace AND p.prosecdef
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_function);
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END $$;
