-- On the worker's lock connection, at start and after that connection was lost: (re)register
-- this worker and return its lock key. A rescuer may have deleted the row meanwhile (the lock was
-- missing long enough); the worker then gets a new key, which is harmless: nothing else uses it.
INSERT INTO stagecast.workers AS w (worker_id) VALUES ($1)
ON CONFLICT (worker_id) DO UPDATE SET lock_missing_since = NULL
RETURNING w.lock_key
