-- Who and where the doctor is connected: the report's first line.
SELECT current_setting('server_version') AS version,
       current_database()::text          AS database,
       current_user::text                AS role
