-- Outcome of every stage-change job: live (failed/pending) and archived (done).
SELECT j.id, j.status, j.customer_id, j.last_error FROM stagecast.jobs j WHERE j.kind = 'stage_change'
UNION ALL
SELECT a.id, 'done', a.customer_id, a.note FROM stagecast.job_archive a WHERE a.kind = 'stage_change'
ORDER BY 1
