-- What the worker's maintenance runs on the queue (sql/vacuum_table.sql), here on demand.
VACUUM (ANALYZE) stagecast.jobs
