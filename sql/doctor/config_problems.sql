-- Problems the utm_event trigger recorded that still hold. config_problems is an append-only
-- log, so "unresolved" means: the latest report per row, kept only while the stage's current
-- value is still invalid (a stage fixed or deleted since is resolved). Rows from other sources
-- cannot be re-checked here and are listed as they are. Stages are read through the adapter view,
-- like the worker reads them (the worker role has no privilege on the CRM tables).
SELECT DISTINCT ON (cp.source, cp.row_id)
       cp.source, cp.row_id, cp.problem, cp.found_at
  FROM stagecast.config_problems cp
  LEFT JOIN stagecast.crm_stages s
         ON cp.source = 'crm_stages.utm_event' AND s.id = cp.row_id
 WHERE cp.source <> 'crm_stages.utm_event'
    OR stagecast.utm_event_problem(s.utm_event) IS NOT NULL
 ORDER BY cp.source, cp.row_id, cp.found_at DESC, cp.id DESC
