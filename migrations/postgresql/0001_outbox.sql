-- PostgreSQL 0001: the outbox, its per-row state, the daemons' table and the operator views.
-- Shipped migrations are never edited: add 0002_*.sql instead. Applied under an advisory lock
-- (several daemons starting together migrate once), in the connection's current schema (the
-- first of its search_path: public, or the schema the URI's options name).
-- All times are Unix milliseconds (bigint); the views show them as timestamptz.

-- The producers' table, written once by their INSERT:
--   INSERT INTO outbox (event_id, payload) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING
-- payload is text, not jsonb: an INSERT never fails on the producer's JSON (a malformed event is
-- the daemon's to dead-letter, with a reason, not a failed checkout), and the event reaches the
-- transform byte for byte as written (jsonb reorders keys, drops duplicates, rewrites numbers).
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text   NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 512),
    payload     text   NOT NULL,
    created_at  bigint NOT NULL DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint,
    -- The destination (pixel, app, event set) by its configured name; NULL is the default one.
    destination text
);

-- The daemons' state machine, one narrow row per outbox row (made by the trigger below, in the
-- producer's transaction): pending -> inflight -> delivered | skipped | dead, and inflight ->
-- pending for a retry or a released claim. Claims and settles update these ~100-byte rows,
-- never the producer's payload. Sequences are not assigned in commit order, so claims never
-- skip rows by an id cursor: they take pending rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE row_state (
    id               bigint  PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
    -- The row's stream, never NULL so that a claim's index range is an equality (PostgreSQL
    -- cannot read an index in order past an IS NULL condition): '' for the default
    -- destination (NULL), '=' || destination otherwise.
    stream           text    NOT NULL,
    state            text    NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'inflight', 'delivered', 'skipped', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  bigint  NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at bigint,
    -- When an attempt first may have reached TikTok: retries stay inside its 48-hour dedup window.
    first_sent_at    bigint,
    last_http_status integer,
    last_tiktok_code integer,
    last_error       text    CHECK (last_error IS NULL OR length(last_error) <= 1000),
    finished_at      bigint,
    -- Claims that ended without a result (the daemon was killed holding the row).
    unsettled_claims integer NOT NULL DEFAULT 0 CHECK (unsettled_claims >= 0),
    CHECK ((state = 'inflight') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('delivered', 'skipped', 'dead')) = (finished_at IS NOT NULL))
);
CREATE INDEX row_state_due ON row_state (stream, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX row_state_unfinished ON row_state (id) WHERE state IN ('pending', 'inflight');
CREATE INDEX row_state_suspect ON row_state (next_attempt_at, id) WHERE state = 'pending' AND unsettled_claims > 0;
CREATE INDEX row_state_inflight ON row_state (lease_expires_at) WHERE state = 'inflight';
CREATE INDEX row_state_finished ON row_state (finished_at) WHERE state IN ('delivered', 'skipped');
CREATE INDEX row_state_dead ON row_state (finished_at) WHERE state = 'dead';

-- New rows get their state in the producer's statement (fresh: next_attempt_at 0, claimed in id
-- order after the due retries; no clock is read, so a daemon's clock a little behind the
-- server's never holds a new row back), and idle daemons hear of them at its commit
-- (LISTEN tiktok_forwarder_outbox).
-- SECURITY DEFINER (with this schema's search_path): producers need INSERT on outbox only.
CREATE FUNCTION tiktok_forwarder_outbox_inserted() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO row_state (id, stream)
    SELECT id, CASE WHEN destination IS NULL THEN '' ELSE '=' || destination END FROM inserted;
    PERFORM pg_notify('tiktok_forwarder_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION tiktok_forwarder_outbox_inserted();

-- Delivered and skipped rows, maintained by the daemons (counting millions of rows for every
-- `status` would take seconds): the sum of a state's slots. Settles and retention change the
-- 'live' slot; the recount a daemon runs 30 s after it starts writes its correction to the
-- 'recount' slot, which nothing else writes (so it never conflicts with a settle).
CREATE TABLE finished_counts (
    state text   NOT NULL CHECK (state IN ('delivered', 'skipped')),
    slot  text   NOT NULL CHECK (slot IN ('live', 'recount')),
    rows  bigint NOT NULL,
    PRIMARY KEY (state, slot)
);
INSERT INTO finished_counts (state, slot, rows)
VALUES ('delivered', 'live', 0), ('delivered', 'recount', 0), ('skipped', 'live', 0), ('skipped', 'recount', 0);

-- delivery.keep_sent: each delivered event exactly as sent.
CREATE TABLE sent_events (
    id    bigint PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
    event text   NOT NULL
);

-- One row per running daemon (owner = host:pid:random), for `status` on any host.
CREATE TABLE daemon_status (
    owner           text    PRIMARY KEY,
    pid             integer NOT NULL,
    started_at      bigint  NOT NULL,
    heartbeat_at    bigint  NOT NULL,
    paused_reason   text,
    in_flight_limit integer,
    delivery_rate   double precision
);

-- Every row and its state.
CREATE VIEW outbox_rows AS
SELECT o.id, o.event_id, o.destination, r.state, r.attempts, r.next_attempt_at, r.lease_owner,
       r.last_http_status, r.last_tiktok_code, r.last_error, o.created_at, r.finished_at, o.payload
FROM outbox o JOIN row_state r ON r.id = o.id;

-- The event name of a payload, or NULL when it is not a JSON object (PostgreSQL 15 has no IS JSON).
CREATE FUNCTION tiktok_forwarder_event_name(payload text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(payload::jsonb) = 'object' THEN payload::jsonb ->> 'event_name' END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE VIEW dead_letters AS
SELECT o.id,
       o.event_id,
       tiktok_forwarder_event_name(o.payload) AS event_name,
       r.attempts,
       r.last_http_status,
       r.last_tiktok_code,
       r.last_error,
       to_timestamp(o.created_at / 1000.0) AS created,
       to_timestamp(r.finished_at / 1000.0) AS dead_since,
       o.payload,
       o.destination
FROM row_state r JOIN outbox o ON o.id = r.id
WHERE r.state = 'dead';

CREATE VIEW outbox_summary AS
SELECT r.state,
       count(*) AS rows,
       to_timestamp(min(o.created_at) / 1000.0) AS oldest_created,
       CASE WHEN r.state IN ('pending', 'inflight')
            THEN round((extract(epoch FROM clock_timestamp()) - min(o.created_at) / 1000.0)::numeric, 1)
       END AS oldest_age_seconds
FROM row_state r JOIN outbox o ON o.id = r.id
GROUP BY r.state;
