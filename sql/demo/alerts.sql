-- The alerts agents see: system messages in each customer's chat.
SELECT cu.name, m.body
  FROM chat_messages m
  JOIN chats ch ON ch.id = m.chat_id
  JOIN customers cu ON cu.id = ch.customer_id
 WHERE m.direction = 'system'
 ORDER BY m.id
