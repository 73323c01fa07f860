-- The lock connection's check, every rescue interval: does the session answering hold this
-- worker's lock? A plain ping is not enough behind a transaction-pooling proxy (pgbouncer in
-- transaction mode), which may answer from another server session than the one holding the lock.
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid()
       AND l.classid = 1398036299::oid AND l.objid = $1::int4::oid AND l.objsubid = 2 AND l.granted)
