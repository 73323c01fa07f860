SELECT stagecast.replace_sealed_token($1, $2, $3)
