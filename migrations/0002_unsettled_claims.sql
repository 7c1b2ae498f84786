-- 0002: crash isolation. A claim whose lease ran out without a result (the daemon crashed,
-- was killed, or hung on this batch) counts as an unsettled claim of each of its rows.
-- Such rows ("suspects") are claimed next in groups that halve with each unsettled claim
-- (the crashes bisect the batch; these group claims consume no attempt), then alone (which
-- does): a row that crashes the daemon every time is isolated after ~log2(batch) crashes
-- and dead-lettered once it has used max_attempts, instead of crash-looping the queue. Any
-- result (delivered, retry, dead, skipped) sets the count back to 0; a graceful release
-- leaves it as it is.

ALTER TABLE outbox ADD COLUMN unsettled_claims INTEGER NOT NULL DEFAULT 0 CHECK (unsettled_claims >= 0);

-- Suspect rows due for a claim of their own.
CREATE INDEX outbox_pending_suspect ON outbox (next_attempt_at) WHERE state = 'pending' AND unsettled_claims > 0;
