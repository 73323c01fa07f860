-- $1 stage id, $2 new utm_event, $3 the value it replaces, $4 actor, $5 reason.
-- See migrations/20261201160000_admin_console.sql.
SELECT stagecast.set_stage_events($1, $2, $3, $4, $5)
