-- utm_event used to hold ONE event config object; it is now an ARRAY of configs (DESIGN §2).
-- 1. Legacy objects become one-element arrays.
-- 2. Legacy object writes after this migration are normalised by a BEFORE trigger, so a CRM
--    that still writes objects keeps working and nothing it writes is lost or rejected.
-- 3. Invalid shapes (strings, numbers, arrays holding non-objects, unparseable legacy text) are
--    kept exactly as they are and reported in stagecast.config_problems; the worker raises a
--    chat alert when a stage change hits one, and `stagecast doctor` lists them.

-- Parse text as jsonb without ever raising: unparseable text becomes a JSON string (kept, reported).
CREATE OR REPLACE FUNCTION stagecast.try_jsonb(p_text text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN p_text::jsonb;
EXCEPTION WHEN OTHERS THEN
    RETURN to_jsonb(p_text);
END $$;

-- NULL when the value is a valid array of config objects (or a legacy object that will be
-- wrapped); otherwise a short description of what is wrong.
CREATE OR REPLACE FUNCTION stagecast.utm_event_problem(p_value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_value IS NULL THEN NULL
        WHEN jsonb_typeof(p_value) = 'object' THEN NULL
        WHEN jsonb_typeof(p_value) = 'array' THEN
            CASE WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(p_value) e WHERE jsonb_typeof(e) <> 'object')
                 THEN 'utm_event array holds an element that is not an object'
                 ELSE NULL END
        ELSE 'utm_event is a JSON ' || jsonb_typeof(p_value) || ', expected an array of event config objects'
    END
$$;

-- Legacy schemas stored utm_event as json or text: convert without losing anything.
DO $$
DECLARE
    v_type text;
BEGIN
    SELECT data_type INTO v_type FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = 'crm_stages' AND column_name = 'utm_event';
    IF v_type IN ('json', 'text', 'character varying') THEN
        ALTER TABLE public.crm_stages ALTER COLUMN utm_event DROP DEFAULT;
        ALTER TABLE public.crm_stages ALTER COLUMN utm_event TYPE jsonb USING stagecast.try_jsonb(utm_event::text);
    END IF;
END $$;

INSERT INTO stagecast.config_problems (source, row_id, problem, value)
SELECT 'crm_stages.utm_event', id, stagecast.utm_event_problem(utm_event), utm_event
  FROM public.crm_stages
 WHERE stagecast.utm_event_problem(utm_event) IS NOT NULL;

UPDATE public.crm_stages SET utm_event = jsonb_build_array(utm_event) WHERE jsonb_typeof(utm_event) = 'object';
UPDATE public.crm_stages SET utm_event = '[]'::jsonb WHERE utm_event IS NULL OR jsonb_typeof(utm_event) = 'null';
ALTER TABLE public.crm_stages ALTER COLUMN utm_event SET DEFAULT '[]'::jsonb;
ALTER TABLE public.crm_stages ALTER COLUMN utm_event SET NOT NULL;

-- Runs before NOT NULL is checked, so a CRM writing NULL gets '[]' instead of an error.
-- SECURITY DEFINER: the CRM's role needs no privilege on schema stagecast for its write to
-- succeed; and every failure is caught, so this trigger can never reject the write.
CREATE OR REPLACE FUNCTION stagecast.normalize_utm_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_problem text;
BEGIN
    IF NEW.utm_event IS NULL OR jsonb_typeof(NEW.utm_event) = 'null' THEN
        NEW.utm_event := '[]'::jsonb;
    ELSIF jsonb_typeof(NEW.utm_event) = 'object' THEN
        NEW.utm_event := jsonb_build_array(NEW.utm_event);
    ELSE
        BEGIN
            v_problem := stagecast.utm_event_problem(NEW.utm_event);
            IF v_problem IS NOT NULL THEN
                INSERT INTO stagecast.config_problems (source, row_id, problem, value)
                VALUES ('crm_stages.utm_event', NEW.id, v_problem, NEW.utm_event);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stagecast: could not check utm_event of stage %: %', NEW.id, SQLERRM;
        END;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER stagecast_normalize_utm_event
    BEFORE INSERT OR UPDATE OF utm_event ON public.crm_stages
    FOR EACH ROW EXECUTE FUNCTION stagecast.normalize_utm_event();
