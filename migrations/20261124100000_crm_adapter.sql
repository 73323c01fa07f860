-- The adapter between the worker and the CRM (DESIGN §2, last point). The worker READS the CRM
-- only through these views and WRITES to it only through the functions below, so a CRM with a
-- different schema adapts by redefining this small set (see docs/crm-integration.md) instead
-- of patching the worker.

CREATE OR REPLACE VIEW stagecast.crm_stages AS
SELECT id, name, funnel_category, position, utm_event, default_value
  FROM public.crm_stages;

CREATE OR REPLACE VIEW stagecast.crm_pixels AS
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source
  FROM public.pixels;

CREATE OR REPLACE VIEW stagecast.crm_campaigns AS
SELECT id, name, facebook_campaign_id, facebook_ad_ids, pixel_id, active, currency
  FROM public.utm_campaigns;

CREATE OR REPLACE VIEW stagecast.crm_customers AS
SELECT id, name, email, phone, stage_id, sale_price, currency, utm_campaign_id, utm_metadata,
       client_ip, client_user_agent, fbclid, fbclid_at, gclid, ttclid, city, state, zip, country,
       created_at
  FROM public.customers;

CREATE OR REPLACE VIEW stagecast.crm_contacts AS
SELECT id, customer_id, kind, value, is_primary
  FROM public.customer_contacts;

CREATE OR REPLACE VIEW stagecast.crm_chats AS
SELECT id, customer_id, channel, external_id, created_at
  FROM public.chats;

-- Post an alert where agents read it: a `system` message in the customer's most recent chat.
-- Returns the message id, or NULL when the customer has no chat (the alert is still kept in
-- stagecast.alerts and shown by `stagecast jobs show`).
CREATE OR REPLACE FUNCTION stagecast.write_chat_alert(p_customer_id bigint, p_body text, p_metadata jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_chat_id bigint;
    v_message_id bigint;
BEGIN
    SELECT id INTO v_chat_id FROM public.chats WHERE customer_id = p_customer_id ORDER BY id DESC LIMIT 1;
    IF v_chat_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.chat_messages (chat_id, direction, body, metadata)
    VALUES (v_chat_id, 'system', p_body, p_metadata)
    RETURNING id INTO v_message_id;
    RETURN v_message_id;
END $$;

-- Replace a plaintext token written by the CRM with its sealed form. Compare-and-set on the
-- plaintext, so a token the CRM changed meanwhile is not clobbered (it is sealed next round).
CREATE OR REPLACE FUNCTION stagecast.store_sealed_token(p_pixel_id bigint, p_sealed text, p_expected_plaintext text)
RETURNS boolean LANGUAGE sql AS $$
    WITH u AS (
        UPDATE public.pixels
           SET access_token_enc = p_sealed, access_token = NULL, updated_at = now()
         WHERE id = p_pixel_id
           AND access_token IS NOT DISTINCT FROM p_expected_plaintext
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u)
$$;

-- Re-seal (key rotation): compare-and-set on the old ciphertext.
CREATE OR REPLACE FUNCTION stagecast.replace_sealed_token(p_pixel_id bigint, p_sealed text, p_expected_sealed text)
RETURNS boolean LANGUAGE sql AS $$
    WITH u AS (
        UPDATE public.pixels
           SET access_token_enc = p_sealed, updated_at = now()
         WHERE id = p_pixel_id
           AND access_token_enc IS NOT DISTINCT FROM p_expected_sealed
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u)
$$;
