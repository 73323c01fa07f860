-- stagecast roles, part 1 of 2: run ONCE per database, as a superuser (or a role holding
-- CREATEROLE and ADMIN OPTION on these roles), after creating the roles and before the first
-- `stagecast migrate`, connected to the CRM's database. Print it with `stagecast roles print`; or with psql:
--   psql -v database=crm -v owner=stagecast_owner -v worker=stagecast_worker -f sql/roles/setup.sql \
--        -f sql/roles/setup_pg16.sql    # PostgreSQL 16 and older only
-- The roles themselves are yours to create, with the login and password policy you use:
--   CREATE ROLE stagecast_owner  LOGIN PASSWORD '…';   -- runs `stagecast migrate`
--   CREATE ROLE stagecast_worker LOGIN PASSWORD '…';   -- runs `stagecast run`
-- None of them is a superuser, and none needs CREATEROLE or CREATEDB.
-- docs/operations.md ("Database roles") explains every line.

-- The owner creates schema stagecast, its tables, views and functions, and the triggers and
-- indexes stagecast adds to the CRM's tables.
GRANT CREATE ON DATABASE :"database" TO :"owner";
-- ... and in public: the contract tables a new CRM does not have yet, and sqlx's
-- _sqlx_migrations bookkeeping table.
GRANT USAGE, CREATE ON SCHEMA public TO :"owner";
-- The worker logs in to this database, and reads _sqlx_migrations in public (PUBLIC has both by
-- default; hardened servers revoke them).
GRANT CONNECT ON DATABASE :"database" TO :"worker";
GRANT USAGE ON SCHEMA public TO :"worker";
-- The migrations add columns, triggers and indexes to the CRM's own tables (customers,
-- chat_messages, crm_stages, ...). ALTER TABLE and CREATE TRIGGER require owning them or being a
-- member of their owner. Either run `stagecast migrate` as the role that owns the CRM's tables
-- (then this part is all you need), or make the stagecast owner a member of that role:
--   GRANT crm_schema_owner TO stagecast_owner;
