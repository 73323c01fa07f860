-- By filter; the same call a CRM admin screen makes. See migrations/20261124120000_admin_actions.sql.
SELECT stagecast.cancel_jobs(p_status => $1, p_kind => $2, p_pixel => $3, p_customer_id => $4,
                             p_since => $5, p_actor => $6, p_reason => $7, p_limit => $8,
                             p_dry_run => $9, p_job_ids => $10)
