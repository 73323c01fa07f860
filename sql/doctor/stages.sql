-- Every stage's event configuration, to run it through the worker's parser.
SELECT id, name, utm_event
  FROM stagecast.crm_stages
 ORDER BY id
