-- Serialise `stagecast migrate` across processes (advisory locks are per database). A try, not a
-- wait: see Store::migrate for the deadlock a waiting lock causes with CREATE INDEX CONCURRENTLY.
-- The key is arbitrary but fixed: 0x5354_4743 ("STGC") in the high half, 1 (migrations) low.
SELECT pg_catalog.pg_try_advisory_lock(1398032195, 1)
