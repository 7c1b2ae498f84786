-- 0006: batch leases. Until 0005 every claim and settle rewrote the whole ~1.2 KB outbox row
-- (SQLite rewrites a record on any UPDATE), so the daemon held the write lock producers need
-- most of the time while draining. Now:
--   * outbox is the producers' table and is written once, by their INSERT (same contract);
--   * a claim records one `batches` row for a run of rows of one stream (the rows whose
--     destination column holds one value) and moves that stream's cursor past them;
--   * a batch delivered whole is settled by updating its one row;
--   * only the exceptions — retries, dead letters, skips, released or reclaimed rows, rows of
--     a batch settled piecemeal — get a row in `row_state`, the per-row state machine of old.
-- Every row's state is still exact and visible: see the outbox_rows view.

CREATE TABLE outbox_v6 (
    -- AUTOINCREMENT: ids only ever grow, even after every row was purged. The cursors rely on
    -- it (and on SQLite's single writer, which assigns ids in commit order).
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The producers' contract: event_id, payload, and (optionally) created_at and destination.
    event_id    TEXT    NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 512),
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    -- The destination (pixel, app, event set) by its configured name; NULL is the default one.
    destination TEXT
) STRICT;

INSERT INTO outbox_v6 (id, event_id, payload, created_at, destination)
SELECT id, event_id, payload, created_at, destination FROM outbox;

-- Rows with a state of their own: everything but the fresh (never claimed) pending rows and
-- the rows of a batch delivered whole. Columns as in 0001, keyed by the outbox id.
CREATE TABLE row_state (
    id               INTEGER PRIMARY KEY,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'skipped', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    first_sent_at    INTEGER,
    last_http_status INTEGER,
    last_tiktok_code INTEGER,
    last_error       TEXT    CHECK (last_error IS NULL OR length(last_error) <= 1000),
    finished_at      INTEGER,
    unsettled_claims INTEGER NOT NULL DEFAULT 0 CHECK (unsettled_claims >= 0),
    CHECK ((state = 'inflight') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('delivered', 'skipped', 'dead')) = (finished_at IS NOT NULL))
) STRICT;

INSERT INTO row_state (id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, first_sent_at,
                       last_http_status, last_tiktok_code, last_error, finished_at, unsettled_claims)
SELECT id, state, attempts, next_attempt_at, lease_owner, lease_expires_at, first_sent_at,
       last_http_status, last_tiktok_code, last_error, finished_at, unsettled_claims
FROM outbox
WHERE state <> 'pending' OR attempts > 0 OR next_attempt_at > 0 OR last_error IS NOT NULL
   OR unsettled_claims > 0 OR first_sent_at IS NOT NULL;

DROP VIEW dead_letters;
DROP VIEW outbox_summary;
DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;

-- Claims read a stream in id order from its cursor; retention deletes a batch's id range.
CREATE INDEX outbox_stream ON outbox (destination, id);

CREATE INDEX row_state_due ON row_state (next_attempt_at) WHERE state = 'pending';
CREATE INDEX row_state_suspect ON row_state (next_attempt_at) WHERE state = 'pending' AND unsettled_claims > 0;
CREATE INDEX row_state_inflight ON row_state (lease_expires_at) WHERE state = 'inflight';
CREATE INDEX row_state_finished ON row_state (finished_at) WHERE state IN ('delivered', 'skipped');
CREATE INDEX row_state_dead ON row_state (finished_at) WHERE state = 'dead';

-- One row per claim of fresh rows: the rows of `stream` (NULL: the NULL destination) with
-- first_id <= id <= last_id that have no row_state row when it was claimed.
CREATE TABLE batches (
    id               INTEGER PRIMARY KEY,
    stream           TEXT,
    first_id         INTEGER NOT NULL,
    last_id          INTEGER NOT NULL CHECK (last_id >= first_id),
    rows             INTEGER NOT NULL CHECK (rows > 0),
    -- Rows settled so far (delivered, retried, dead, skipped or released); at `rows` it is done.
    settled          INTEGER NOT NULL DEFAULT 0 CHECK (settled >= 0),
    -- Rows delivered with the batch (no row_state row: their state is the batch's).
    delivered        INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    claimed_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    CHECK ((finished_at IS NULL) = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
) STRICT;

CREATE INDEX batches_open ON batches (lease_expires_at) WHERE finished_at IS NULL;
CREATE INDEX batches_finished ON batches (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX batches_range ON batches (stream, last_id);

-- Per stream, the last id claimed: rows above it with no row_state row are pending.
CREATE TABLE cursors (
    -- '' for the NULL destination, '=' || destination otherwise.
    stream_key TEXT    PRIMARY KEY,
    last_id    INTEGER NOT NULL
) STRICT;

-- Start each stream's cursor just below its first fresh row (0.. rows below are all in
-- row_state), so no claim has to step over the rows migrated there.
INSERT INTO cursors (stream_key, last_id)
SELECT CASE WHEN o.destination IS NULL THEN '' ELSE '=' || o.destination END,
       coalesce((SELECT min(f.id) - 1 FROM outbox f
                 WHERE f.destination IS o.destination AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = f.id)),
                max(o.id))
FROM outbox o
GROUP BY o.destination;

-- Every row and its state, derived: its row_state row if it has one; else the batch that
-- claimed it (in flight until the batch is settled, then delivered); else pending.
CREATE VIEW outbox_rows AS
SELECT o.id,
       o.event_id,
       o.destination,
       coalesce(r.state,
                CASE WHEN b.id IS NULL THEN 'pending' WHEN b.finished_at IS NULL THEN 'inflight' ELSE 'delivered' END) AS state,
       coalesce(r.attempts, CASE WHEN b.id IS NULL THEN 0 ELSE 1 END) AS attempts,
       coalesce(r.next_attempt_at, 0) AS next_attempt_at,
       coalesce(r.lease_owner, CASE WHEN b.finished_at IS NULL THEN b.lease_owner END) AS lease_owner,
       r.last_http_status,
       r.last_tiktok_code,
       r.last_error,
       o.created_at,
       coalesce(r.finished_at, b.finished_at) AS finished_at,
       o.payload
FROM outbox o
LEFT JOIN row_state r ON r.id = o.id
LEFT JOIN batches b ON r.id IS NULL AND b.id = (
    SELECT c.id FROM batches c WHERE c.stream IS o.destination AND c.last_id >= o.id ORDER BY c.last_id LIMIT 1)
    AND b.first_id <= o.id;

CREATE VIEW dead_letters AS
SELECT o.id,
       o.event_id,
       CASE WHEN json_valid(o.payload) THEN json_extract(o.payload, '$.event_name') END AS event_name,
       r.attempts,
       r.last_http_status,
       r.last_tiktok_code,
       r.last_error,
       strftime('%Y-%m-%dT%H:%M:%SZ', o.created_at / 1000, 'unixepoch') AS created,
       strftime('%Y-%m-%dT%H:%M:%SZ', r.finished_at / 1000, 'unixepoch') AS dead_since,
       o.payload,
       o.destination
FROM row_state r JOIN outbox o ON o.id = r.id
WHERE r.state = 'dead';

CREATE VIEW outbox_summary AS
SELECT state,
       count(*) AS rows,
       strftime('%Y-%m-%dT%H:%M:%SZ', min(created_at) / 1000, 'unixepoch') AS oldest_created,
       CASE WHEN state IN ('pending', 'inflight')
            THEN round((julianday('now') - 2440587.5) * 86400 - min(created_at) / 1000.0, 1)
       END AS oldest_age_seconds
FROM outbox_rows
GROUP BY state;
