-- Customers holding a click id older than Meta uses it: $1 seconds after a click-to-WhatsApp
-- click (utm_metadata.clicked_at), $2 seconds after an fbclid was captured (fbclid_at). A full
-- scan of the customers view, run by the doctor only. clicked_at is the worker's own UTC
-- RFC 3339 text, so it is compared as text: a value a CRM wrote by hand never fails a cast.
SELECT count(*) FILTER (
           WHERE cu.utm_metadata ? 'ctwa_clid'
             AND cu.utm_metadata ->> 'clicked_at' ~ '^\d{4}-\d{2}-\d{2}T'
             AND cu.utm_metadata ->> 'clicked_at'
                 < to_char((now() - make_interval(secs => $1)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'))
           AS ctwa_clid,
       count(*) FILTER (
           WHERE nullif(cu.fbclid, '') IS NOT NULL
             AND cu.fbclid_at < now() - make_interval(secs => $2)) AS fbclid
  FROM stagecast.crm_customers cu
