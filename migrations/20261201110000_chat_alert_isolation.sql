-- An alert the CRM's chat refuses must not fail the write-back that also holds other jobs'
-- outcomes (issue 12, finding 5): a CRM's real chat_messages often has more NOT NULL columns
-- than our contract (e.g. sender_id), and stagecast.write_chat_alert's INSERT then fails.

-- Why the alert did not reach the chat (SQLSTATE and message), NULL when it did or when the
-- customer has no chat. The alert itself stays in stagecast.alerts either way.
ALTER TABLE stagecast.alerts ADD COLUMN IF NOT EXISTS chat_error text;

-- Post alerts one by one, each in its own exception block (a subtransaction: alerts are rare,
-- so its cost does not matter), recording the chat's refusal instead of raising it.
-- WHEN OTHERS does not catch query_canceled: a statement timeout still fails the write-back,
-- which retries it. Not SECURITY DEFINER, and deliberately without SET search_path: it runs
-- stagecast.write_chat_alert, the adapter a CRM may redefine for its own schema, with the
-- caller's settings, as the write-back always did. Every name here is schema-qualified.
CREATE OR REPLACE FUNCTION stagecast.post_chat_alerts(p_alert_ids bigint[])
RETURNS TABLE (alert_id bigint, chat_message_id bigint, chat_error text)
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    v_message_id bigint;
BEGIN
    FOR a IN SELECT al.id, al.customer_id, al.message, al.cause, al.job_id, al.details
               FROM stagecast.alerts al
              WHERE al.id = ANY(p_alert_ids) AND al.customer_id IS NOT NULL
              ORDER BY al.id
    LOOP
        BEGIN
            v_message_id := stagecast.write_chat_alert(
                a.customer_id, a.message,
                pg_catalog.jsonb_build_object('stagecast', pg_catalog.jsonb_build_object(
                    'alert', a.cause, 'job_id', a.job_id, 'details', a.details)));
            UPDATE stagecast.alerts SET chat_message_id = v_message_id, chat_error = NULL
             WHERE id = a.id;
            alert_id := a.id;
            chat_message_id := v_message_id;
            chat_error := NULL;
        EXCEPTION WHEN OTHERS THEN
            -- The message only (no DETAIL: it may quote the row, i.e. customer data).
            alert_id := a.id;
            chat_message_id := NULL;
            chat_error := SQLSTATE || ': ' || SQLERRM;
            UPDATE stagecast.alerts SET chat_error = post_chat_alerts.chat_error WHERE id = a.id;
        END;
        RETURN NEXT;
    END LOOP;
END $$;

-- Only the worker posts alerts: the owner can, and a deployment grants EXECUTE to the worker
-- role (docs/operations.md, roles).
REVOKE EXECUTE ON FUNCTION stagecast.post_chat_alerts(bigint[]) FROM PUBLIC;
