-- Chat alerts a job raised, with why the chat refused one (chat_error). $1 job id. Alerts
-- written before migration 20261201150000 carry Meta's `fbtrace_id` and a numeric `code` in
-- their details: shown as `trace_id` and a text `code`, like every newer alert.
SELECT id, cause, locale, message,
       CASE WHEN jsonb_typeof(d.v -> 'code') = 'number'
            THEN jsonb_set(d.v, '{code}', to_jsonb(d.v ->> 'code'))
            ELSE d.v END AS details,
       chat_message_id, chat_error, created_at
  FROM stagecast.alerts,
       LATERAL (SELECT CASE WHEN details ? 'fbtrace_id'
                            THEN (details - 'fbtrace_id')
                                 || jsonb_build_object('trace_id', coalesce(details -> 'trace_id', details -> 'fbtrace_id'))
                            ELSE details END AS v) AS d
 WHERE job_id = $1
 ORDER BY id
