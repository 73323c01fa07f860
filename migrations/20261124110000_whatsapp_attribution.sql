-- WhatsApp click-to-ad attribution (docs/attribution.md): inbound messages that may carry ad
-- data queue an `attribution` job; the worker parses the webhook JSON, finds the customer,
-- records the first touch in customers.utm_metadata and links the campaign.

-- How a pixel routes events of customers who came from a click-to-WhatsApp ad:
-- auto (default): business_messaging when the customer has a ctwa_clid and the pixel a WABA id;
-- always: business_messaging whenever the pixel has a WABA id; never: the pixel's action_source.
ALTER TABLE public.pixels ADD COLUMN IF NOT EXISTS messaging_mode text NOT NULL DEFAULT 'auto';

CREATE OR REPLACE VIEW stagecast.crm_pixels AS
SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
       waba_id, test_event_code, action_source, messaging_mode
  FROM public.pixels;

CREATE OR REPLACE VIEW stagecast.crm_messages AS
SELECT id, chat_id, direction, metadata, created_at
  FROM public.chat_messages;

-- Digits of a phone or WhatsApp id, for matching a sender to a contact:
-- '5511987654321:12@s.whatsapp.net' → '5511987654321', '(11) 98765-4321' → '11987654321'.
CREATE OR REPLACE FUNCTION stagecast.phone_digits(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT nullif(regexp_replace(split_part(split_part(p_value, '@', 1), ':', 1), '\D', '', 'g'), '')
$$;

-- Expression indexes (no table rewrite) so linking by number is an index lookup.
CREATE INDEX IF NOT EXISTS customer_contacts_phone_digits_idx ON public.customer_contacts (stagecast.phone_digits(value));
CREATE INDEX IF NOT EXISTS customers_phone_digits_idx ON public.customers (stagecast.phone_digits(phone));

-- Record the first touch: the ad data is written only if the customer has none yet (first
-- touch only; a later message never overwrites it), and the campaign only if none is linked.
-- Returns 'recorded', 'kept' (first touch already present) or 'missing' (no such customer).
CREATE OR REPLACE FUNCTION stagecast.record_first_touch(p_customer_id bigint, p_metadata jsonb, p_campaign_id bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_had_first_touch boolean;
BEGIN
    -- The row lock makes two concurrent messages agree on which one is the first touch.
    SELECT coalesce(utm_metadata, '{}'::jsonb) ?| ARRAY['source_id', 'ctwa_clid', 'ad_marker']
      INTO v_had_first_touch
      FROM public.customers WHERE id = p_customer_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    UPDATE public.customers
       SET utm_metadata = CASE WHEN v_had_first_touch THEN utm_metadata
                               ELSE coalesce(utm_metadata, '{}'::jsonb) || p_metadata END,
           -- The campaign comes with the first touch it was matched from, never from a later ad.
           utm_campaign_id = CASE WHEN v_had_first_touch THEN utm_campaign_id
                                  ELSE coalesce(utm_campaign_id, p_campaign_id) END,
           updated_at = now()
     WHERE id = p_customer_id;
    RETURN CASE WHEN v_had_first_touch THEN 'kept' ELSE 'recorded' END;
END $$;

-- Queue attribution jobs for inbound messages that may carry ad data. The filter is a cheap
-- text search for the keys every supported gateway uses; the worker does the real parsing.
CREATE OR REPLACE FUNCTION stagecast.enqueue_inbound_messages(p_message_ids bigint[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_count integer := 0;
BEGIN
    IF coalesce(cardinality(p_message_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    BEGIN
        INSERT INTO stagecast.jobs (kind, payload, dedup_key, max_attempts)
        SELECT 'attribution', jsonb_build_object('message_id', m.id, 'chat_id', m.chat_id),
               'attribution:' || m.id, 6
          FROM stagecast.crm_messages m
         WHERE m.id = ANY(p_message_ids)
        ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        BEGIN
            INSERT INTO stagecast.enqueue_failures (kind, payload, error)
            VALUES ('attribution', jsonb_build_object('message_ids', to_jsonb(p_message_ids)), SQLSTATE || ': ' || SQLERRM);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stagecast: could not queue attribution nor park it: %', SQLERRM;
        END;
    END;
    RETURN v_count;
END $$;

-- Keys that mark WhatsApp ad data in Cloud API, Baileys/Evolution and whatsmeow payloads.
CREATE OR REPLACE FUNCTION stagecast.may_carry_ad_data(p_direction text, p_metadata jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_direction = 'inbound'
       AND p_metadata IS NOT NULL
       AND jsonb_typeof(p_metadata) IN ('object', 'string')
       AND p_metadata::text ~* '(referral|externaladreply|ctwa|conversionsource|sourceid|source_id)'
$$;

CREATE OR REPLACE FUNCTION stagecast.chat_messages_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    BEGIN
        PERFORM stagecast.enqueue_inbound_messages(array_agg(n.id))
           FROM new_rows n
          WHERE stagecast.may_carry_ad_data(n.direction, n.metadata)
         HAVING count(*) > 0;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'stagecast: attribution trigger failed: %', SQLERRM;
    END;
    RETURN NULL;
END $$;

-- A gateway may first store an undecryptable stub and fill in the real message (with its ad
-- data) later: an UPDATE that changes the metadata is looked at too.
CREATE OR REPLACE FUNCTION stagecast.chat_messages_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    BEGIN
        PERFORM stagecast.enqueue_inbound_messages(array_agg(n.id))
           FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.metadata IS DISTINCT FROM o.metadata
            AND stagecast.may_carry_ad_data(n.direction, n.metadata)
         HAVING count(*) > 0;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'stagecast: attribution trigger failed: %', SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE TRIGGER stagecast_chat_messages_inserted
    AFTER INSERT ON public.chat_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stagecast.chat_messages_inserted();

CREATE TRIGGER stagecast_chat_messages_updated
    AFTER UPDATE ON public.chat_messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stagecast.chat_messages_updated();
