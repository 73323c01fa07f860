-- The lock connection's session settings. A worker whose host vanishes from the network sends no
-- FIN, and Postgres would keep its session (and lock) until the kernel's keepalive gives up,
-- two hours by default: these make the server probe an idle lock connection after 2 s and drop
-- it about 4 s after the worker went silent (unacknowledged data: tcp_user_timeout). Settable by
-- any role; ignored on a Unix socket.
SELECT pg_catalog.set_config('tcp_keepalives_idle', '2', false),
       pg_catalog.set_config('tcp_keepalives_interval', '1', false),
       pg_catalog.set_config('tcp_keepalives_count', '2', false),
       pg_catalog.set_config('tcp_user_timeout', '4000', false),
       pg_catalog.set_config('application_name', 'stagecast worker lock ' || $1, false)
