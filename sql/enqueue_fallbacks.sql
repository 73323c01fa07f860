-- CRM changes the triggers could not queue, for the stagecast_enqueue_fallbacks gauge: parked
-- rows still waiting for the re-queue (counted up to 200,000, like queue_stats.sql, so a scrape
-- stays cheap however much piled up during a long lock) and changes that could be neither queued
-- nor parked (stagecast.lost_enqueues()).
SELECT (SELECT count(*) FROM (SELECT 1 FROM stagecast.enqueue_failures LIMIT 200000) p) AS parked,
       stagecast.lost_enqueues() AS lost
