-- The campaign whose ad ids, or campaign id (users type either there), equal $1. Active first.
SELECT id FROM stagecast.crm_campaigns
 WHERE facebook_ad_ids @> ARRAY[$1::text] OR facebook_campaign_id = $1
 ORDER BY active DESC, id
 LIMIT 1
