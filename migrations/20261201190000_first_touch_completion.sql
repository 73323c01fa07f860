-- A first touch is the first *ad click data* (docs/attribution.md, "First touch"). A touch
-- without a click id (only the opaque conversionSource / ctwaPayload marker, or a WhatsApp
-- Status ad, which Meta sends without ctwa_clid) is recorded, but no longer blocks the click
-- id: the first later message carrying both a ctwa_clid and an ad id completes it. A touch
-- with a ctwa_clid is never overwritten.
-- Returns 'recorded', 'completed' (an incomplete touch replaced), 'kept' or 'missing'.
-- Same signature as before, so the worker role's EXECUTE grant is kept; CREATE OR REPLACE
-- resets SECURITY DEFINER and the search_path, so both are restated here.
CREATE OR REPLACE FUNCTION stagecast.record_first_touch(p_customer_id bigint, p_metadata jsonb, p_campaign_id bigint)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- Every key the worker writes for a touch (src/pipeline/attribution.rs, first_touch_metadata).
    c_touch_keys constant text[] := ARRAY['source_id', 'source_type', 'ctwa_clid', 'ad_title',
        'ad_body', 'source_url', 'thumbnail_url', 'image_url', 'video_url', 'source_app',
        'conversion_source', 'entry_point_conversion_source', 'waba_id', 'message_id',
        'media_type', 'clicked_at', 'chat_message_id', 'payload_shape', 'ad_marker'];
    v_old jsonb;
    v_state text;
BEGIN
    -- The row lock makes two concurrent messages agree on which one is the first touch.
    SELECT coalesce(c.utm_metadata, '{}'::jsonb)
      INTO v_old
      FROM public.customers c WHERE c.id = p_customer_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    v_state := CASE
        WHEN v_old ? 'ctwa_clid' THEN 'complete'
        WHEN v_old ?| ARRAY['source_id', 'ad_marker'] THEN 'incomplete'
        ELSE 'none' END;
    IF v_state = 'none' THEN
        UPDATE public.customers
           SET utm_metadata = v_old || p_metadata,
               utm_campaign_id = coalesce(utm_campaign_id, p_campaign_id),
               updated_at = pg_catalog.now()
         WHERE id = p_customer_id;
        RETURN 'recorded';
    END IF;
    IF v_state = 'incomplete' AND p_metadata ? 'ctwa_clid' AND p_metadata ? 'source_id' THEN
        -- The incomplete touch's own keys give way to the click's; what it said is kept under
        -- `completed_marker` for the record. A campaign already linked stays linked.
        UPDATE public.customers
           SET utm_metadata = (v_old - c_touch_keys) || p_metadata
                   || pg_catalog.jsonb_build_object('completed_marker',
                          (SELECT coalesce(pg_catalog.jsonb_object_agg(e.key, e.value), '{}'::jsonb)
                             FROM pg_catalog.jsonb_each(v_old) e
                            WHERE e.key = ANY (c_touch_keys))),
               utm_campaign_id = coalesce(utm_campaign_id, p_campaign_id),
               updated_at = pg_catalog.now()
         WHERE id = p_customer_id;
        RETURN 'completed';
    END IF;
    RETURN 'kept';
END $$;
REVOKE EXECUTE ON FUNCTION stagecast.record_first_touch(bigint, jsonb, bigint) FROM PUBLIC;
