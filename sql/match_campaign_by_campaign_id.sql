-- The campaign with this Meta campaign id (found through a Graph API lookup of the ad).
SELECT id FROM stagecast.crm_campaigns WHERE facebook_campaign_id = $1 ORDER BY active DESC, id LIMIT 1
