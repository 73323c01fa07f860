-- A destination's hold is lifted: a request succeeded ($3 NULL), or its configuration changed
-- (only the hold of the old fingerprint $3 goes; one for the new configuration stays).
DELETE FROM stagecast.destination_holds
 WHERE platform = $1 AND destination = $2 AND ($3::text IS NULL OR fingerprint = $3)
