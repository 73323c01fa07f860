-- An inbound message and its chat's customer (if the CRM linked one), for attribution.
SELECT m.id, m.chat_id, m.metadata, m.created_at, c.customer_id
  FROM stagecast.crm_messages m
  LEFT JOIN stagecast.crm_chats c ON c.id = m.chat_id
 WHERE m.id = $1
