-- Post new alerts into the customers' chats through the adapter function (docs/crm-integration.md §5), one
-- exception block per alert (stagecast.post_chat_alerts): a chat the CRM's schema refuses
-- keeps its alert in stagecast.alerts with the reason, and the write-back goes on.
-- Returns (alert id, chat message id, reason the chat refused it).
SELECT alert_id, chat_message_id, chat_error FROM stagecast.post_chat_alerts($1::bigint[])
