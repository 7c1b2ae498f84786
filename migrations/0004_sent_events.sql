-- 0004: what was sent for a delivered row, exactly as TikTok received it (hashed), kept only
-- when the operator enables delivery.keep_sent, and purged with the row by retention. For
-- `tiktok-forwarder show EVENT_ID`: checking an event against the pixel in Events Manager.

CREATE TABLE sent_events (
    id    INTEGER PRIMARY KEY,  -- outbox.id
    event TEXT    NOT NULL
) STRICT;
