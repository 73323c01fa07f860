-- Chat alerts a job raised. $1 job id.
SELECT id, cause, locale, message, details, chat_message_id, created_at
  FROM stagecast.alerts
 WHERE job_id = $1
 ORDER BY id
