-- Chat alerts a job raised, with why the chat refused one (chat_error). $1 job id.
SELECT id, cause, locale, message, details, chat_message_id, chat_error, created_at
  FROM stagecast.alerts
 WHERE job_id = $1
 ORDER BY id
