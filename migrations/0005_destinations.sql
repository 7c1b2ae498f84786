-- 0005: several destinations (pixels, apps, event sets) from one outbox. The row's
-- `destination` column (reserved since 0001) names one; NULL is the default destination.
-- Each destination is claimed on its own (a request never mixes them, and a paused one is
-- simply not claimed): this index serves those claims and the search for rows whose
-- destination is not configured.
CREATE INDEX outbox_pending_destination ON outbox (destination, next_attempt_at) WHERE state = 'pending';

-- The operators' view of dead rows gains the destination.
DROP VIEW dead_letters;
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
       payload,
       destination
FROM outbox
WHERE state = 'dead';
