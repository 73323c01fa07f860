-- Events per destination and outcome over the last hour and day, from the delivery audit: a
-- range scan of its BRIN index on created_at, capped at 1,000,000 rows (a day at 11 events/s;
-- a busier day shows as capped rather than making the page slow). Read per page view of the
-- console's overview and destinations pages, never per metrics scrape.
SELECT platform, destination,
       count(*) FILTER (WHERE outcome = 'delivered' AND created_at >= now() - interval '1 hour') AS delivered_hour,
       count(*) FILTER (WHERE outcome = 'failed' AND created_at >= now() - interval '1 hour') AS failed_hour,
       count(*) FILTER (WHERE outcome = 'delivered') AS delivered_day,
       count(*) FILTER (WHERE outcome = 'failed') AS failed_day,
       count(*) FILTER (WHERE outcome = 'retry') AS retried_day,
       count(*) FILTER (WHERE outcome = 'throttled' AND created_at >= now() - interval '1 hour') AS throttled_hour,
       max(created_at) FILTER (WHERE outcome = 'throttled') AS last_throttled_at,
       max(created_at) FILTER (WHERE outcome = 'delivered') AS last_delivered_at,
       count(*) OVER () AS destinations,
       sum(count(*)) OVER ()::bigint AS rows_read
  FROM (SELECT platform, destination, outcome, created_at
          FROM stagecast.deliveries
         WHERE created_at >= now() - interval '1 day'
         LIMIT 1000000) d
 GROUP BY platform, destination
 ORDER BY platform, destination
