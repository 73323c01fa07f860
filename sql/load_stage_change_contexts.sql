-- Everything the pipeline needs about a batch of stage changes, in one round trip, read through
-- the adapter views. $1 job ids, $2 customer ids, $3 stage ids (parallel arrays).
-- Campaign fallback (docs/fallbacks.md §1): the customer's campaign; else the campaign whose ad ids (or
-- campaign id, which users also type there) match the first-touch ad id in utm_metadata.
-- `optional`: the contract's optional customer columns (docs/crm-integration.md §5), read by name
-- from the row so a redefined view without them still works (absent keys are NULL).
-- Plan-proofing: each customer is a lookup by key (a LATERAL subquery the planner cannot
-- flatten). Joined as `cu.id = c.customer_id`, a customers table never analyzed (a bulk import,
-- autovacuum off) was merge-joined through an index scan from its first id, reading every
-- customer up to the batch's highest id: 20,015 rows (35,000 buffers, 65 ms) for 1,000 customers
-- at the top of a 20,000-row table, about a million per batch at the top of a 1,000,000-row one;
-- with `AND cu.id = ANY($2)` added, a never-analyzed table got a seq scan. Keyed: 1,000 index
-- lookups, ≈ 15 ms. tests/claim_plan.rs checks the shape.
SELECT c.job_id,
       cu.id AS customer_id, cu.name, cu.email, cu.phone, cu.sale_price::float8 AS sale_price,
       cu.currency, cu.utm_metadata, cu.client_ip, cu.client_user_agent, cu.fbclid, cu.fbclid_at,
       cu.ttclid,
       cu.city, cu.state, cu.zip, cu.country, cu.created_at AS customer_created_at,
       cu.optional,
       s.id AS stage_id, s.name AS stage_name, s.funnel_category, s.utm_event,
       s.default_value::float8 AS stage_default_value,
       camp.id AS campaign_id, camp.name AS campaign_name, camp.pixel_id AS campaign_pixel_ref,
       camp.currency AS campaign_currency, camp.matched_by AS campaign_matched_by,
       (SELECT jsonb_agg(jsonb_build_object('kind', cc.kind, 'value', cc.value) ORDER BY cc.is_primary DESC, cc.id)
          FROM stagecast.crm_contacts cc WHERE cc.customer_id = cu.id) AS contacts
  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c(job_id, customer_id, stage_id)
  -- One key lookup per customer: OFFSET 0 keeps the planner from flattening the subquery into
  -- a join it may plan as a scan of all customers.
  -- `optional`: the row is turned into jsonb once (OFFSET 0). Flattened, `j` was replaced by
  -- its expression and to_jsonb ran once per key read: 0.1 ms a customer, 100 of the query's
  -- 125 ms per 1,000 (once: 28 ms).
  LEFT JOIN LATERAL (
        SELECT x.*,
               (SELECT jsonb_strip_nulls(jsonb_build_object('fbp', j ->> 'fbp', 'birth_date', j ->> 'birth_date',
                                                            'gender', j ->> 'gender', 'lead_id', j ->> 'lead_id',
                                                            'gclid', j ->> 'gclid', 'gbraid', j ->> 'gbraid',
                                                            'wbraid', j ->> 'wbraid'))
                  FROM (SELECT to_jsonb(x) AS j OFFSET 0) r) AS optional
          FROM stagecast.crm_customers x
         WHERE x.id = c.customer_id
        OFFSET 0
  ) cu ON true
  LEFT JOIN stagecast.crm_stages s ON s.id = c.stage_id
  LEFT JOIN LATERAL (
        SELECT * FROM (
            SELECT uc.id, uc.name, uc.pixel_id, uc.currency, 'customer'::text AS matched_by, 0 AS rank
              FROM stagecast.crm_campaigns uc
             WHERE uc.id = cu.utm_campaign_id
            UNION ALL
            SELECT uc.id, uc.name, uc.pixel_id, uc.currency, 'first_touch_ad'::text, 1
              FROM stagecast.crm_campaigns uc
             WHERE cu.utm_campaign_id IS NULL
               AND nullif(cu.utm_metadata ->> 'source_id', '') IS NOT NULL
               AND (uc.facebook_ad_ids @> ARRAY[cu.utm_metadata ->> 'source_id']
                    OR uc.facebook_campaign_id = cu.utm_metadata ->> 'source_id')
        ) m
        ORDER BY m.rank, m.id
        LIMIT 1
  ) camp ON true
