SELECT stagecast.record_first_touch($1, $2, $3)
