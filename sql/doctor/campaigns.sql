-- Campaigns and the pixel each reports to (campaign → pixel fallback, docs/fallbacks.md §2).
SELECT id, name, pixel_id, active
  FROM stagecast.crm_campaigns
 ORDER BY id
