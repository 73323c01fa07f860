-- $1 job id, $2 actor, $3 reason. See migrations/20261124120000_admin_actions.sql.
SELECT stagecast.cancel_job($1, $2, $3)
