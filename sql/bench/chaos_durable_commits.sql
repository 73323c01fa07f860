-- The throwaway cluster runs with synchronous_commit=off (fast tests), so a crash restart
-- would lose the last commits, the CRM's included: the chaos database commits synchronously.
-- (A per-database setting overrides the server's command line.) fsync stays off: the machine
-- itself does not crash, only the server.
ALTER DATABASE stagecast_chaos SET synchronous_commit = on
