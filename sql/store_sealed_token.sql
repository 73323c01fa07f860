SELECT stagecast.store_sealed_token($1, $2, $3)
