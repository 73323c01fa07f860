-- Limits shared by every worker on this database (docs/operations.md, "Rate limits, throttles
-- and holds"): before each request a worker takes a slot from its destination's row, so N
-- workers together send no more than the configured rate, and a throttle or a hold one worker
-- learns stops the others too. Touched once per request (up to 1,000 events), not per event.

-- One row per destination: the GCRA "theoretical arrival time" of the next request (advanced in
-- the same statement that grants a slot) and the pause the platform asked for, if any.
-- UNLOGGED: written on every request, and a transaction that writes only unlogged tables does
-- not wait for a WAL flush at commit. A server crash empties it, which costs nothing worth
-- keeping: a fresh start of the limit, and a throttle the platform will answer again.
CREATE UNLOGGED TABLE stagecast.destination_limits (
    platform     text        NOT NULL,
    destination  text        NOT NULL,
    tat          timestamptz NOT NULL,
    paused_until timestamptz,
    PRIMARY KEY (platform, destination)
);

-- A destination the platform refused for its configuration: the fingerprint (a SHA-256 of the
-- destination id and token, never the token) of the configuration refused, the alert cause and
-- the platform's error, when the next probe is due, and since when it is held (the statement
-- that holds it tells "news" from a repeat by it, so one alert is raised across all workers).
CREATE TABLE stagecast.destination_holds (
    platform      text        NOT NULL,
    destination   text        NOT NULL,
    fingerprint   text        NOT NULL,
    cause         text        NOT NULL,
    http_status   integer,
    error_code    text,
    error_subcode bigint,
    trace_id      text,
    message       text        NOT NULL,
    next_probe    timestamptz NOT NULL,
    held_since    timestamptz NOT NULL,
    PRIMARY KEY (platform, destination)
);

-- The workers sharing these limits, seen within the last seconds: when the database cannot be
-- reached, each worker falls back to its share (the limit divided by their number). UNLOGGED
-- for the same reason: it is rewritten every second and rebuilt as soon as workers run.
CREATE UNLOGGED TABLE stagecast.limit_peers (
    peer    text        PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- Tiny rows updated on every request or beat: room on the page keeps those updates HOT.
ALTER TABLE stagecast.destination_limits SET (fillfactor = 50);
ALTER TABLE stagecast.limit_peers SET (fillfactor = 50);
