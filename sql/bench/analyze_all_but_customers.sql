-- Statistics of the CRM and queue tables before the overhead measurement; customers and its
-- bare copy are left unanalyzed for scenario B (a CRM right after a bulk import).
ANALYZE crm_stages, pixels, utm_campaigns, customer_contacts, chats, chat_messages,
        stagecast.jobs, stagecast.job_archive, stagecast.deliveries, stagecast.alerts,
        stagecast.enqueue_failures
