-- Post new alerts into the customers' chats through the adapter function (docs/crm-integration.md §5).
UPDATE stagecast.alerts a
   SET chat_message_id = stagecast.write_chat_alert(
           a.customer_id, a.message,
           jsonb_build_object('stagecast', jsonb_build_object('alert', a.cause, 'job_id', a.job_id,
                                                              'details', a.details)))
 WHERE a.id = ANY($1::bigint[]) AND a.customer_id IS NOT NULL
RETURNING a.id, a.chat_message_id
