-- 0001: the outbox, the daemons' status table, and the operator views.
-- Shipped migrations are never edited: add 0002_*.sql instead.
-- All times are Unix milliseconds (INTEGER); the views show them as UTC text.

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    -- The producers' contract: event_id, payload, and (optionally) created_at.
    event_id         TEXT    NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 512),
    payload          TEXT    NOT NULL,
    created_at       INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    -- Reserved for routing several pixels from one outbox; NULL is the configured pixel.
    destination      TEXT,
    -- The daemon's state machine: pending -> inflight -> delivered | skipped | dead,
    -- and inflight -> pending again for a retry or a released claim.
    state            TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'inflight', 'delivered', 'skipped', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    -- When an attempt first may have reached TikTok: retries stay inside its 48-hour dedup window.
    first_sent_at    INTEGER,
    last_http_status INTEGER,
    last_tiktok_code INTEGER,
    last_error       TEXT    CHECK (last_error IS NULL OR length(last_error) <= 1000),
    finished_at      INTEGER,
    -- A row holds a lease exactly while it is in flight.
    CHECK ((state = 'inflight') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    -- Final rows carry their finalisation time; others do not.
    CHECK ((state IN ('delivered', 'skipped', 'dead')) = (finished_at IS NOT NULL))
) STRICT;

-- The claim: due pending rows, oldest due first.
CREATE INDEX outbox_pending_due ON outbox (next_attempt_at) WHERE state = 'pending';
-- Reclaiming expired leases.
CREATE INDEX outbox_inflight_lease ON outbox (lease_expires_at) WHERE state = 'inflight';
-- Retention purge and the delivery rate.
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE state IN ('delivered', 'skipped');
-- Dead-letter listing, redrive and purge.
CREATE INDEX outbox_dead ON outbox (finished_at) WHERE state = 'dead';

-- One row per running daemon, so that `status` (another process) can say whether delivery
-- is paused and why.
CREATE TABLE daemon_status (
    owner           TEXT    PRIMARY KEY,
    pid             INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    heartbeat_at    INTEGER NOT NULL,
    paused_reason   TEXT,
    in_flight_limit INTEGER
) STRICT;

CREATE VIEW dead_letters AS
SELECT id,
       event_id,
       CASE WHEN json_valid(payload) THEN json_extract(payload, '$.event_name') END AS event_name,
       attempts,
       last_http_status,
       last_tiktok_code,
       last_error,
       strftime('%Y-%m-%dT%H:%M:%SZ', created_at / 1000, 'unixepoch') AS created,
       strftime('%Y-%m-%dT%H:%M:%SZ', finished_at / 1000, 'unixepoch') AS dead_since,
       payload
FROM outbox
WHERE state = 'dead';

CREATE VIEW outbox_summary AS
SELECT state,
       count(*) AS rows,
       strftime('%Y-%m-%dT%H:%M:%SZ', min(created_at) / 1000, 'unixepoch') AS oldest_created,
       CASE WHEN state IN ('pending', 'inflight')
            THEN round((julianday('now') - 2440587.5) * 86400 - min(created_at) / 1000.0, 1)
       END AS oldest_age_seconds
FROM outbox
GROUP BY state;
