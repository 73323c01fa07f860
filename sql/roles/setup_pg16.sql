-- stagecast roles, part 1b, PostgreSQL 16 and older only (as a superuser, after setup.sql).
-- Before PostgreSQL 17 only a table's owner may VACUUM it, so the worker owns the hot tables it
-- vacuums (worker_vacuum_pg16.sql). The owner must be a member of the worker role to hand them
-- over (ALTER TABLE ... OWNER TO), to keep migrating them (ALTER TABLE, CREATE INDEX) and to let
-- its SECURITY DEFINER functions (the enqueue triggers, the admin functions) write them.
-- The membership goes this way only: the worker gains nothing of the owner's.
GRANT :"worker" TO :"owner";
