-- The newest chat alerts, with why the chat refused one (chat_error). $1 limit.
SELECT id, job_id, customer_id, cause, locale, message, chat_message_id, chat_error, created_at
  FROM stagecast.alerts
 ORDER BY id DESC
 LIMIT $1
