-- 0003: counts of finished rows, so that `status` answers in milliseconds however many
-- delivered rows are retained (a count over millions of index entries takes ~0.3 s per 5 M,
-- a GROUP BY over the table seconds). The store adds to them when it settles rows and
-- subtracts when retention purges them; the daemon recounts them at start, which corrects
-- any drift from rows deleted by hand. And the daemon's own delivery rate, so that `status`
-- and systemd's STATUS= line show one number.

CREATE TABLE finished_counts (
    state TEXT    PRIMARY KEY CHECK (state IN ('delivered', 'skipped')),
    rows  INTEGER NOT NULL CHECK (rows >= 0)
) STRICT;

INSERT INTO finished_counts (state, rows)
SELECT 'delivered', (SELECT count(*) FROM outbox WHERE state IN ('delivered', 'skipped') AND state = 'delivered')
UNION ALL
SELECT 'skipped', (SELECT count(*) FROM outbox WHERE state IN ('delivered', 'skipped') AND state = 'skipped');

-- Events delivered per second over the last minute, as the daemon measures it.
ALTER TABLE daemon_status ADD COLUMN delivery_rate REAL;
