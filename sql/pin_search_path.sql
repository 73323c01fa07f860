-- Run on every new connection of every stagecast command but `migrate`: unqualified functions
-- and operators resolve in pg_catalog only. Resolution prefers an exact argument-type match to a
-- polymorphic built-in whatever the schema order, so with public on the path, functions a CRM
-- role had planted there (public.cardinality(bigint[]), an operator text || bigint) ran inside
-- the worker's own statements, as the worker (tests/privileges.rs). Every statement of sql/
-- names its tables, views and functions with their schema.
SET search_path = pg_catalog, pg_temp
