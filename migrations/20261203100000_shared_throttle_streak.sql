-- The throttle streak of a destination, shared by every worker like its pause
-- (sql/pause_destination.sql): a pause without the platform's estimate doubles per consecutive
-- throttle, whichever worker was throttled, so N workers back off as one client would instead of
-- each starting again from the short pause. A constant default on an UNLOGGED table of one row
-- per destination: no rewrite worth the name.
ALTER TABLE stagecast.destination_limits
    ADD COLUMN IF NOT EXISTS throttles integer NOT NULL DEFAULT 0;
