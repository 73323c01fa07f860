-- Sessions holding a lock on a stagecast table that blocks the worker or the CRM's triggers:
-- every mode that conflicts with ROW EXCLUSIVE (INSERT/UPDATE/DELETE); ACCESS EXCLUSIVE also
-- blocks reads. Read from pg_locks and pg_stat_activity, which take no lock on the tables
-- themselves, so this answers while they are locked (the doctor's other reads are bounded by
-- its lock_timeout). pg_stat_activity shows another role's state and times only to members of
-- that role or of pg_read_all_stats: `visible` tells which.
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)                    AS table_name,
       l.mode,
       l.pid,
       nullif(a.application_name, '')                                       AS application_name,
       a.usename::text                                                      AS role_name,
       a.state,
       coalesce(a.xact_start, a.backend_start)                              AS since,
       (a.state IS NOT NULL)                                                AS visible
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_class c ON c.oid = l.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted
   AND l.locktype = 'relation'
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND n.nspname = 'stagecast'
   AND c.relkind IN ('r', 'p')
   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
   AND l.pid <> pg_catalog.pg_backend_pid()
 ORDER BY c.relname, l.pid
