-- stagecast roles, optional part: the CRM application role, when stagecast's migrations
-- CREATED the contract tables (a new CRM): then the stagecast owner owns them and the CRM's
-- application role needs the plain reads and writes a CRM makes. Run as the owner after
-- migrate (`stagecast roles apply --crm <role>`). An existing CRM that owns its tables already
-- grants its own role and needs none of this.
--
-- Nothing here, nor anywhere, is granted to the CRM role on schema stagecast: the triggers
-- stagecast adds to these tables are SECURITY DEFINER (they write the queue as the owner), the
-- phone-lookup indexes use built-in functions only, and Postgres checks no EXECUTE privilege
-- when a trigger fires. A CRM write therefore never depends on stagecast's privileges.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON public.crm_stages, public.pixels, public.utm_campaigns, public.customers,
      public.customer_contacts, public.chats, public.chat_messages
   TO :"crm";
