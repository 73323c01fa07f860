-- Dead rows of stagecast's churning tables against the threshold autovacuum would apply to each
-- (autovacuum_vacuum_threshold + autovacuum_vacuum_scale_factor × reltuples: the table's own
-- settings, else the server's; jobs sets 5000 and 0), and whether this role may VACUUM it.
-- The worker's maintenance vacuums what is past its threshold, whether autovacuum runs or not
-- (autovacuum off left 200k dead rows in jobs after a 100k-event burst, for good); `stagecast
-- doctor` reports the same rows. pg_stat_user_tables and pg_class are in memory or tiny: this
-- reads no table data, so it is cheap on every maintenance tick.
-- VACUUM needs ownership before PostgreSQL 17, the MAINTAIN privilege since (the database owner
-- and superusers may always): see sql/roles/worker_vacuum_pg16.sql and _pg17.sql.
SELECT s.relname::text                                            AS table_name,
       pg_catalog.format('%I.%I', s.schemaname, s.relname)        AS qualified_name,
       s.n_live_tup,
       s.n_dead_tup,
       (coalesce(o.threshold, current_setting('autovacuum_vacuum_threshold')::float8)
        + coalesce(o.scale_factor, current_setting('autovacuum_vacuum_scale_factor')::float8)
          * greatest(c.reltuples, 0))::float8                     AS dead_threshold,
       greatest(s.last_vacuum, s.last_autovacuum)                 AS last_vacuumed_at,
       (CASE WHEN current_setting('server_version_num')::int >= 170000
             THEN has_table_privilege(c.oid, 'MAINTAIN')
             ELSE pg_has_role(c.relowner, 'USAGE') END
        OR pg_has_role((SELECT d.datdba FROM pg_database d WHERE d.datname = current_database()), 'USAGE'))
                                                                  AS may_vacuum,
       (current_setting('autovacuum')::bool AND current_setting('track_counts')::bool
        AND coalesce(o.enabled, true))                            AS autovacuum_on
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
  CROSS JOIN LATERAL (
        SELECT max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_threshold')::float8    AS threshold,
               max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_scale_factor')::float8 AS scale_factor,
               max(option_value) FILTER (WHERE option_name = 'autovacuum_enabled')::bool               AS enabled
          FROM pg_options_to_table(c.reloptions)) o
 WHERE s.schemaname = 'stagecast'
   AND s.relname IN ('jobs', 'job_archive', 'deliveries', 'alerts', 'enqueue_failures')
 ORDER BY s.relname
