import ForwarderCore
import Foundation

/// The outbox in PostgreSQL, shared by producers and daemons on any number of hosts.
///
/// Producers' rows are written once, by their INSERT; a statement trigger gives each a narrow
/// `row_state` row in the same transaction and notifies idle daemons at commit. Claims take
/// pending rows with `FOR UPDATE SKIP LOCKED` (several daemons never block each other or take
/// the same row), settles are fenced by the lease owner, and a dead host's rows come back when
/// their lease expires. No cursor over ids: sequences are not assigned in commit order.
///
/// One connection, serialised by a lock; each operation is one short transaction and none
/// spans network I/O. Give each delivery worker its own store.
public final class PostgresOutboxStore: OutboxStore, @unchecked Sendable {
    private let connection: PostgresConnection
    private let lock = NSLock()
    /// The URI without secrets (for errors).
    private let displayName: String

    /// Connects to the database at `uri` (a libpq connection URI without a password) and
    /// migrates it to the latest schema (creating it when `createIfMissing`), unless `migrate`
    /// is false.
    public init(uri: String, migrate: Bool = true, createIfMissing: Bool = true, applicationName: String = "tiktok-forwarder") throws {
        displayName = PostgresURI.display(uri)
        connection = try PostgresConnection(uri: uri, applicationName: applicationName)
        if try migrate && (createIfMissing || PostgresMigrator.version(connection) > 0) {
            try PostgresMigrator.migrate(connection)
        } else {
            let version = try PostgresMigrator.version(connection)
            if version > PostgresMigrator.latestVersion {
                throw MigrationError.newerSchema(database: version, binary: PostgresMigrator.latestVersion)
            }
            if version == 0 {
                throw PostgresError(message: "no outbox in the PostgreSQL database \(displayName): create it with `tiktok-forwarder migrate --db URI` (the daemon also creates it at start)")
            }
        }
    }

    private func locked<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(connection)
    }

    // MARK: - Producers

    public func enqueue(_ events: [NewEvent], now: UnixMillis) throws -> EnqueueResult {
        guard !events.isEmpty else { return EnqueueResult() }
        for event in events where event.payload.utf8.contains(0) || event.eventID.utf8.contains(0) {
            throw PostgresError(message: "event '\(SafeText.escapingControls(String(event.eventID.prefix(100))))': PostgreSQL text cannot hold a NUL byte (write it as \\u0000 in the JSON)")
        }
        return try locked { db in
            let inserted = try db.query("""
                INSERT INTO outbox (event_id, payload, created_at, destination)
                SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
                ON CONFLICT (event_id) DO NOTHING
                """, [pgArray(events.map(\.eventID)), pgArray(events.map(\.payload)),
                      pgArray(Array(repeating: now, count: events.count)), pgArray(events.map(\.destination))]).changes
            return EnqueueResult(inserted: inserted, duplicates: events.count - inserted)
        }
    }

    // MARK: - The delivery cycle

    /// The row_state conditions that select a route's rows, one per stream (an equality on
    /// `stream`, so each is an index range read in order); `name` is the parameter holding the
    /// route's stream key (every variant uses it: libpq must infer its type).
    private static func streams(_ route: Route?, name: String) -> [String] {
        guard let route else { return ["\(name)::text IS NOT NULL"] }
        return route.includingUnrouted ? ["stream = \(name)", "stream = ''"] : ["stream = \(name)"]
    }

    /// A destination's key in `row_state.stream`: '' for NULL (the default), '=' + name otherwise.
    static func streamKey(_ destination: String?) -> String { destination.map { "=" + $0 } ?? "" }

    private static let claimedColumns = "r.id, o.event_id, o.payload, o.created_at, r.attempts, r.first_sent_at, r.unsettled_claims"

    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool, route: Route?) throws -> [ClaimedRow] {
        guard limit > 0 else { return [] }
        let streams = Self.streams(route, name: "$4")
        let anyStream = "(" + streams.joined(separator: " OR ") + ")"
        // $1 now, $2 limit, $3 owner, $4 route name, $5 lease until.
        let parameters: [String?] = [String(now), String(limit), owner, Self.streamKey(route?.name), String(leaseUntil)]
        // No transaction: each statement is atomic, and the group claim re-checks what the
        // first read saw (another daemon may have taken those rows meanwhile).
        return try locked { db in
            // Suspects — rows whose last claim ended without a result (a daemon crashed,
            // was killed or hung holding them) — go first, in groups that halve with every
            // such claim (limit >> unsettled_claims): a row that crashes daemons is alone
            // after ~log2(limit) crashes. A group of more than one row is not counted as an
            // attempt (its innocent rows keep their budget); a claim of one row is.
            if suspects {
                let first = try db.query("""
                    SELECT unsettled_claims FROM row_state
                    WHERE state = 'pending' AND unsettled_claims > 0 AND next_attempt_at <= $1
                        AND (\(Self.streams(route, name: "$2").joined(separator: " OR ")))
                    ORDER BY next_attempt_at, id LIMIT 1
                    """, [String(now), Self.streamKey(route?.name)])
                if first.count == 1 {
                    let unsettled = first.int(0, 0)
                    let group = max(1, limit >> min(unsettled, 30))
                    let rows = try db.query("""
                        WITH picked AS (
                            SELECT id FROM row_state
                            WHERE state = 'pending' AND unsettled_claims = $6 AND next_attempt_at <= $1 AND \(anyStream)
                            ORDER BY next_attempt_at, id LIMIT $2
                            FOR UPDATE SKIP LOCKED)
                        UPDATE row_state r
                        SET state = 'inflight', lease_owner = $3, lease_expires_at = $5,
                            attempts = r.attempts + ((SELECT count(*) FROM picked) = 1 AND r.attempts < 2147483647)::int
                        FROM picked, outbox o
                        WHERE r.id = picked.id AND o.id = r.id
                        RETURNING \(Self.claimedColumns)
                        """, [parameters[0], String(group), parameters[2], parameters[3], parameters[4], String(unsettled)])
                    if rows.count > 0 { return Self.claimedRows(rows) }
                }
            }
            // Due retries (and released or redriven rows) first, oldest due first; then
            // fresh rows (next_attempt_at 0) in id order. Per stream, so each part is an
            // index range; rows locked here but not picked are free again at commit.
            var parts: [String] = []
            var selects: [String] = []
            for (k, stream) in streams.enumerated() {
                parts.append("""
                    due\(k) AS (SELECT id, next_attempt_at, 0 AS phase FROM row_state
                                WHERE state = 'pending' AND \(stream) AND next_attempt_at BETWEEN 1 AND $1 AND unsettled_claims = 0
                                ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
                    fresh\(k) AS (SELECT id, next_attempt_at, 1 AS phase FROM row_state
                                  WHERE state = 'pending' AND \(stream) AND next_attempt_at = 0 AND unsettled_claims = 0
                                  ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                    """)
                selects += ["SELECT * FROM due\(k)", "SELECT * FROM fresh\(k)"]
            }
            let rows = try db.query("""
                WITH \(parts.joined(separator: ",\n")),
                picked AS (SELECT id FROM (\(selects.joined(separator: " UNION ALL "))) c ORDER BY phase, next_attempt_at, id LIMIT $2)
                UPDATE row_state r
                SET state = 'inflight', lease_owner = $3, lease_expires_at = $5,
                    attempts = r.attempts + (r.attempts < 2147483647)::int
                FROM picked, outbox o
                WHERE r.id = picked.id AND o.id = r.id
                RETURNING \(Self.claimedColumns)
                """, parameters)
            return Self.claimedRows(rows)
        }
    }

    private static func claimedRows(_ rows: PostgresRows) -> [ClaimedRow] {
        var claimed: [ClaimedRow] = []
        claimed.reserveCapacity(rows.count)
        for i in 0..<rows.count {
            // event_id is TikTok's deduplication key: a value that is not UTF-8 (possible in a
            // SQL_ASCII database) is never "repaired" but flagged, and the row dead-lettered.
            let id = rows.bytes(i, 1)
            let valid = String(validating: id, as: UTF8.self)
            claimed.append(ClaimedRow(id: rows.int64(i, 0), eventID: valid ?? String(decoding: id, as: UTF8.self), payload: rows.bytes(i, 2),
                                      createdAt: rows.int64(i, 3), attempts: rows.int(i, 4), firstSentAt: rows.optionalInt64(i, 5),
                                      unsettledClaims: rows.int(i, 6), eventIDIsValidUTF8: valid != nil))
        }
        claimed.sort { $0.id < $1.id }
        return claimed
    }

    public func settle(_ settlements: [Settlement], owner: String, now: UnixMillis) throws -> Int {
        guard !settlements.isEmpty else { return 0 }
        var delivered: [Int64] = []
        var deliveredRecord = AttemptRecord()
        var sent: [(Int64, String)] = []
        var retries: [(id: Int64, at: UnixMillis, record: AttemptRecord)] = []
        var dead: [(id: Int64, record: AttemptRecord)] = []
        var skipped: [(id: Int64, reason: String)] = []
        for settlement in settlements {
            switch settlement {
            case .delivered(let id, let record):
                if delivered.isEmpty { deliveredRecord = record }
                delivered.append(id)
                if let event = record.sentEvent { sent.append((id, event)) }
            case .retry(let id, let at, let record): retries.append((id, at, record))
            case .dead(let id, let record): dead.append((id, record))
            case .skipped(let id, let reason): skipped.append((id, reason))
            }
        }
        let now = String(now)
        return try locked { db in
            try db.transaction {
                var changed = 0
                var deliveredRows = 0, skippedRows = 0
                if !sent.isEmpty {
                    try db.query("""
                        INSERT INTO sent_events (id, event)
                        SELECT u.id, u.event FROM unnest($1::bigint[], $2::text[]) AS u(id, event)
                        JOIN row_state r ON r.id = u.id AND r.state = 'inflight' AND r.lease_owner = $3
                        ON CONFLICT (id) DO UPDATE SET event = excluded.event
                        """, [pgArray(sent.map(\.0)), pgArray(sent.map(\.1)), owner])
                }
                if !delivered.isEmpty {
                    deliveredRows = try db.query("""
                        UPDATE row_state
                        SET state = 'delivered', finished_at = $2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                            last_http_status = $3, last_tiktok_code = $4, last_error = NULL
                        WHERE id = ANY($1::bigint[]) AND state = 'inflight' AND lease_owner = $5
                        """, [pgArray(delivered), now, pgText(deliveredRecord.httpStatus), pgText(deliveredRecord.tiktokCode), owner]).changes
                    changed += deliveredRows
                }
                if !retries.isEmpty {
                    changed += try db.query("""
                        UPDATE row_state r
                        SET state = 'pending', next_attempt_at = greatest(u.at, 1), lease_owner = NULL, lease_expires_at = NULL,
                            unsettled_claims = 0, last_http_status = u.http, last_tiktok_code = u.code, last_error = u.error,
                            first_sent_at = CASE WHEN u.reached THEN coalesce(r.first_sent_at, $2) ELSE r.first_sent_at END
                        FROM unnest($1::bigint[], $3::bigint[], $4::int[], $5::int[], $6::text[], $7::bool[]) AS u(id, at, http, code, error, reached)
                        WHERE r.id = u.id AND r.state = 'inflight' AND r.lease_owner = $8
                        """, [pgArray(retries.map(\.id)), now, pgArray(retries.map(\.at)), pgArray(retries.map(\.record.httpStatus)),
                              pgArray(retries.map(\.record.tiktokCode)), pgArray(retries.map { $0.record.error.map { boundedError($0) } }),
                              pgArray(retries.map(\.record.mayHaveReachedTikTok)), owner]).changes
                }
                if !dead.isEmpty {
                    changed += try db.query("""
                        UPDATE row_state r
                        SET state = 'dead', finished_at = $2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                            last_http_status = u.http, last_tiktok_code = u.code, last_error = u.error,
                            first_sent_at = CASE WHEN u.reached THEN coalesce(r.first_sent_at, $2) ELSE r.first_sent_at END
                        FROM unnest($1::bigint[], $3::int[], $4::int[], $5::text[], $6::bool[]) AS u(id, http, code, error, reached)
                        WHERE r.id = u.id AND r.state = 'inflight' AND r.lease_owner = $7
                        """, [pgArray(dead.map(\.id)), now, pgArray(dead.map(\.record.httpStatus)), pgArray(dead.map(\.record.tiktokCode)),
                              pgArray(dead.map { boundedError($0.record.error ?? "dead-lettered") }),
                              pgArray(dead.map(\.record.mayHaveReachedTikTok)), owner]).changes
                }
                if !skipped.isEmpty {
                    skippedRows = try db.query("""
                        UPDATE row_state r
                        SET state = 'skipped', finished_at = $2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                            last_error = u.error
                        FROM unnest($1::bigint[], $3::text[]) AS u(id, error)
                        WHERE r.id = u.id AND r.state = 'inflight' AND r.lease_owner = $4
                        """, [pgArray(skipped.map(\.id)), now, pgArray(skipped.map { boundedError($0.reason) }), owner]).changes
                    changed += skippedRows
                }
                try Self.addFinished(db, delivered: deliveredRows, skipped: skippedRows)
                return changed
            }
        }
    }

    /// Keeps the 'live' slot of `finished_counts` in step with the rows, in the caller's transaction.
    private static func addFinished(_ db: PostgresConnection, delivered: Int, skipped: Int) throws {
        guard delivered != 0 || skipped != 0 else { return }
        try db.query("""
            UPDATE finished_counts SET rows = rows + CASE state WHEN 'delivered' THEN $1::bigint ELSE $2::bigint END
            WHERE slot = 'live'
            """, [String(delivered), String(skipped)])
    }

    public func release(ids: [Int64], owner: String, now: UnixMillis) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try locked { db in
            try db.query("""
                UPDATE row_state
                SET state = 'pending', attempts = greatest(attempts - 1, 0), next_attempt_at = greatest($2::bigint, 1),
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE id = ANY($1::bigint[]) AND state = 'inflight' AND lease_owner = $3
                """, [pgArray(ids), String(now), owner]).changes
        }
    }

    public func reclaimExpiredLeases(now: UnixMillis) throws -> Int {
        try locked { db in
            try db.query("""
                UPDATE row_state
                SET state = 'pending', next_attempt_at = greatest($1::bigint, 1), lease_owner = NULL, lease_expires_at = NULL,
                    unsettled_claims = unsettled_claims + (unsettled_claims < 2147483647)::int
                WHERE state = 'inflight' AND lease_expires_at <= $1
                """, [String(now)]).changes
        }
    }

    public func reclaimLeases(owners: [String], now: UnixMillis) throws -> Int {
        guard !owners.isEmpty else { return 0 }
        return try locked { db in
            try db.query("""
                UPDATE row_state
                SET state = 'pending', next_attempt_at = greatest($1::bigint, 1), lease_owner = NULL, lease_expires_at = NULL,
                    unsettled_claims = unsettled_claims + (unsettled_claims < 2147483647)::int
                WHERE state = 'inflight' AND lease_owner = ANY($2::text[])
                """, [String(now), pgArray(owners)]).changes
        }
    }

    // MARK: - Counts

    private static func scalar(_ db: PostgresConnection, _ sql: String, _ parameters: [String?] = []) throws -> Int {
        let rows = try db.query(sql, parameters)
        return rows.count > 0 ? rows.int(0, 0) : 0
    }

    public func unfinishedCount() throws -> Int {
        try locked { db in try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state IN ('pending', 'inflight')") }
    }

    public func dueCount(now: UnixMillis) throws -> Int {
        try locked { db in
            try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'pending' AND next_attempt_at <= $1", [String(now)])
        }
    }

    /// Pending, in flight and dead rows, and the insert time of the oldest unfinished row
    /// (the lowest unfinished id: ids follow insert order closely).
    private static func backlog(_ db: PostgresConnection) throws -> Backlog {
        let counts = try db.query("""
            SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'inflight'),
                   (SELECT count(*) FROM row_state WHERE state = 'dead'),
                   (SELECT o.created_at FROM outbox o
                    WHERE o.id = (SELECT min(id) FROM row_state WHERE state IN ('pending', 'inflight')))
            FROM row_state WHERE state IN ('pending', 'inflight')
            """)
        return Backlog(pending: counts.int(0, 0), inflight: counts.int(0, 1), dead: counts.int(0, 2), oldestCreatedAt: counts.optionalInt64(0, 3))
    }

    public func backlog() throws -> Backlog {
        try locked { db in try Self.backlog(db) }
    }

    public func stats(now: UnixMillis) throws -> OutboxStats {
        try locked { db in
            try db.transaction(isolation: "REPEATABLE READ") {
                var stats = OutboxStats()
                let backlog = try Self.backlog(db)
                let finished = try db.query("SELECT state, greatest(sum(rows), 0) FROM finished_counts GROUP BY state")
                stats.counts = [.pending: backlog.pending, .inflight: backlog.inflight, .dead: backlog.dead, .delivered: 0, .skipped: 0]
                for i in 0..<finished.count {
                    if let state = RowState(rawValue: finished.string(i, 0)) { stats.counts[state] = finished.int(i, 1) }
                }
                stats.oldestPendingCreatedAt = backlog.oldestCreatedAt
                // Recent errors: the latest dead rows, and pending rows waiting on a retry.
                let errors = try db.query("""
                    SELECT r.id, o.event_id, r.state, r.last_http_status, r.last_tiktok_code, r.last_error, r.finished_at
                    FROM ((SELECT * FROM row_state WHERE state = 'dead' ORDER BY finished_at DESC LIMIT 5)
                          UNION ALL
                          (SELECT * FROM row_state WHERE state = 'pending' AND last_error IS NOT NULL ORDER BY next_attempt_at DESC LIMIT 5)) r
                    JOIN outbox o ON o.id = r.id
                    ORDER BY coalesce(r.finished_at, r.next_attempt_at) DESC
                    LIMIT 5
                    """)
                for i in 0..<errors.count {
                    stats.recentErrors.append(RecentError(
                        id: errors.int64(i, 0), eventID: errors.string(i, 1), state: RowState(rawValue: errors.string(i, 2)) ?? .dead,
                        httpStatus: errors.optionalInt(i, 3), tiktokCode: errors.optionalInt(i, 4),
                        error: errors.optionalString(i, 5) ?? "", at: errors.optionalInt64(i, 6)))
                }
                stats.daemons = try Self.daemons(db)
                stats.deliveryRate = stats.daemons.reduce(0) { $0 + ($1.deliveryRate ?? 0) }
                return stats
            }
        }
    }

    public func recountFinished() throws {
        // One snapshot: the exact counts and the maintained ones as they stood in it. The
        // difference goes to the 'recount' slot, which no settle writes, so settles committed
        // meanwhile keep their own increments and nothing waits. Two daemons recounting at
        // once: one gets a serialization failure, and the other's correction stands.
        do {
            try locked { db in
                try db.transaction(isolation: "REPEATABLE READ") {
                    _ = try db.query("""
                        WITH exact AS (SELECT state, count(*) AS rows FROM row_state WHERE state IN ('delivered', 'skipped') GROUP BY state),
                        stored AS (SELECT state, sum(rows) AS rows FROM finished_counts GROUP BY state)
                        UPDATE finished_counts f
                        SET rows = f.rows + coalesce((SELECT rows FROM exact e WHERE e.state = f.state), 0) - s.rows
                        FROM stored s
                        WHERE f.slot = 'recount' AND s.state = f.state
                        """)
                }
            }
        } catch let error as PostgresError where error.isRetryable {
            return
        }
    }

    public func destinationBacklogs() throws -> [DestinationBacklog] {
        try locked { db in
            let rows = try db.query("""
                SELECT CASE WHEN stream = '' THEN NULL ELSE substr(stream, 2) END, count(*) FILTER (WHERE state = 'pending'),
                       count(*) FILTER (WHERE state = 'inflight'), count(*) FILTER (WHERE state = 'dead')
                FROM row_state WHERE state IN ('pending', 'inflight', 'dead')
                GROUP BY stream
                ORDER BY stream
                """)
            return (0..<rows.count).map { i in
                DestinationBacklog(destination: rows.optionalString(i, 0), pending: rows.int(i, 1), inflight: rows.int(i, 2), dead: rows.int(i, 3))
            }
        }
    }

    public func deadLetterUnknownDestinations(known: [String], now: UnixMillis) throws -> [String: Int] {
        try locked { db in
            // The destinations with pending rows: one index seek each (a loose index scan).
            let names = try db.query("""
                WITH RECURSIVE d (name) AS (
                    (SELECT stream FROM row_state WHERE state = 'pending' AND stream > '' ORDER BY stream LIMIT 1)
                    UNION ALL
                    SELECT (SELECT stream FROM row_state WHERE state = 'pending' AND stream > d.name ORDER BY stream LIMIT 1)
                    FROM d WHERE d.name IS NOT NULL)
                SELECT substr(name, 2) FROM d WHERE name IS NOT NULL AND NOT (name = ANY($1::text[]))
                """, [pgArray(known.map { Self.streamKey($0) })])
            var result: [String: Int] = [:]
            for i in 0..<names.count {
                let name = names.string(i, 0)
                result[name] = try db.query("""
                    UPDATE row_state SET state = 'dead', finished_at = $2, last_error = $3
                    WHERE state = 'pending' AND stream = $1
                    """, [Self.streamKey(name), String(now), String(Route.unknownReason(name, known: known).prefix(1_000))]).changes
            }
            return result
        }
    }

    // MARK: - Operators

    /// The SQL condition on row_state for a selection of dead rows; its parameter is `$2`.
    private func deadCondition(_ selection: DeadSelection) -> (String, String?) {
        switch selection {
        case .all: return ("$2::text IS NULL", nil)
        case .ids(let ids): return ("id = ANY($2::bigint[])", pgArray(ids))
        case .eventIDs(let eventIDs): return ("id IN (SELECT id FROM outbox WHERE event_id = ANY($2::text[]))", pgArray(eventIDs))
        case .deadSince(let time): return ("finished_at >= $2::bigint", String(time))
        case .deadBefore(let time): return ("finished_at < $2::bigint", String(time))
        }
    }

    public func redrive(_ selection: DeadSelection, now: UnixMillis) throws -> Int {
        let (condition, parameter) = deadCondition(selection)
        return try locked { db in
            try db.query("""
                UPDATE row_state
                SET state = 'pending', attempts = 0, next_attempt_at = greatest($1::bigint, 1), finished_at = NULL, first_sent_at = NULL,
                    unsettled_claims = 0
                WHERE state = 'dead' AND \(condition)
                """, [String(now), parameter]).changes
        }
    }

    public func purgeFinished(finishedBefore: UnixMillis, limit: Int) throws -> Int {
        guard limit > 0 else { return 0 }
        return try locked { db in
            try db.transaction {
                // One bounded chunk: the oldest finished rows, their outbox rows (row_state and
                // sent_events go with them by cascade). Rows another daemon is purging are skipped.
                let gone = try db.query("""
                    WITH old AS (
                        SELECT id, state FROM row_state
                        WHERE state IN ('delivered', 'skipped') AND finished_at < $1
                        ORDER BY finished_at LIMIT $2
                        FOR UPDATE SKIP LOCKED),
                    deleted AS (DELETE FROM outbox o USING old WHERE o.id = old.id RETURNING old.state)
                    SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'skipped') FROM deleted
                    """, [String(finishedBefore), String(limit)])
                let (delivered, skipped) = (gone.int(0, 0), gone.int(0, 1))
                try Self.addFinished(db, delivered: -delivered, skipped: -skipped)
                return delivered + skipped
            }
        }
    }

    public func purgeDead(_ selection: DeadSelection, limit: Int) throws -> Int {
        guard limit > 0 else { return 0 }
        let (condition, parameter) = deadCondition(selection)
        return try locked { db in
            try db.query("""
                DELETE FROM outbox WHERE id IN (
                    SELECT id FROM row_state WHERE state = 'dead' AND \(condition) ORDER BY finished_at LIMIT $1)
                """, [String(limit), parameter]).changes
        }
    }

    private static let deadLetterColumns = """
        o.id, o.event_id, tiktok_forwarder_event_name(o.payload), r.attempts, r.last_http_status, r.last_tiktok_code, r.last_error,
        o.created_at, r.finished_at, o.payload
        """

    private static func deadLetter(_ rows: PostgresRows, _ i: Int) -> DeadLetter {
        DeadLetter(id: rows.int64(i, 0), eventID: rows.string(i, 1), eventName: rows.optionalString(i, 2), attempts: rows.int(i, 3),
                   httpStatus: rows.optionalInt(i, 4), tiktokCode: rows.optionalInt(i, 5), error: rows.optionalString(i, 6),
                   createdAt: rows.int64(i, 7), deadSince: rows.int64(i, 8), payload: rows.string(i, 9))
    }

    public func deadLetters(since: UnixMillis?, limit: Int?) throws -> [DeadLetter] {
        try locked { db in
            let rows = try db.query("""
                SELECT \(Self.deadLetterColumns)
                FROM row_state r JOIN outbox o ON o.id = r.id
                WHERE r.state = 'dead' AND r.finished_at >= $2
                ORDER BY r.finished_at DESC, r.id DESC
                LIMIT $1
                """, [limit.map(String.init), String(since ?? .min)])
            return (0..<rows.count).map { Self.deadLetter(rows, $0) }
        }
    }

    public func deadLetter(_ key: String) throws -> DeadLetter? {
        try locked { db in
            let rows = try db.query("""
                SELECT \(Self.deadLetterColumns)
                FROM outbox o JOIN row_state r ON r.id = o.id
                WHERE (o.event_id = $1 OR o.id = $2::bigint) AND r.state = 'dead'
                ORDER BY o.event_id = $1 DESC
                LIMIT 1
                """, [key, Int64(key).map(String.init)])
            return rows.count == 1 ? Self.deadLetter(rows, 0) : nil
        }
    }

    public func row(_ key: String) throws -> OutboxRow? {
        try locked { db in
            let one = try db.query("""
                SELECT o.id, o.event_id, o.created_at, o.payload, s.event,
                       r.state, r.attempts, r.next_attempt_at, r.finished_at, r.lease_owner, r.lease_expires_at,
                       r.last_http_status, r.last_tiktok_code, r.last_error
                FROM outbox o JOIN row_state r ON r.id = o.id LEFT JOIN sent_events s ON s.id = o.id
                WHERE o.event_id = $1 OR o.id = $2::bigint
                ORDER BY o.event_id = $1 DESC
                LIMIT 1
                """, [key, Int64(key).map(String.init)])
            guard one.count == 1 else { return nil }
            return OutboxRow(id: one.int64(0, 0), eventID: one.string(0, 1), state: RowState(rawValue: one.string(0, 5)) ?? .pending,
                             attempts: one.int(0, 6), createdAt: one.int64(0, 2), nextAttemptAt: one.int64(0, 7), finishedAt: one.optionalInt64(0, 8),
                             leaseOwner: one.optionalString(0, 9), leaseExpiresAt: one.optionalInt64(0, 10), httpStatus: one.optionalInt(0, 11),
                             tiktokCode: one.optionalInt(0, 12), error: one.optionalString(0, 13), payload: one.string(0, 3),
                             sentEvent: one.optionalString(0, 4))
        }
    }

    // MARK: - Daemons

    public func recordDaemonStatus(_ status: DaemonStatus) throws {
        try locked { db in
            _ = try db.query("""
                INSERT INTO daemon_status (owner, pid, started_at, heartbeat_at, paused_reason, in_flight_limit, delivery_rate)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                    paused_reason = excluded.paused_reason, in_flight_limit = excluded.in_flight_limit,
                    delivery_rate = excluded.delivery_rate
                """, [status.owner, String(status.pid), String(status.startedAt), String(status.heartbeatAt), status.pausedReason,
                      pgText(status.inFlightLimit), pgText(status.deliveryRate.flatMap { $0.isFinite ? $0 : nil })])
        }
    }

    public func removeDaemonStatus(owner: String) throws {
        try locked { db in _ = try db.query("DELETE FROM daemon_status WHERE owner = $1", [owner]) }
    }

    public func daemonStatuses() throws -> [DaemonStatus] {
        try locked { db in try Self.daemons(db) }
    }

    private static func daemons(_ db: PostgresConnection) throws -> [DaemonStatus] {
        let rows = try db.query("""
            SELECT owner, pid, started_at, heartbeat_at, paused_reason, in_flight_limit, delivery_rate
            FROM daemon_status ORDER BY started_at, owner
            """)
        return (0..<rows.count).map { i in
            DaemonStatus(owner: rows.string(i, 0), pid: rows.int(i, 1), startedAt: rows.int64(i, 2), heartbeatAt: rows.int64(i, 3),
                         pausedReason: rows.optionalString(i, 4), inFlightLimit: rows.optionalInt(i, 5), deliveryRate: rows.optionalDouble(i, 6))
        }
    }

    /// The database server's clock minus `now` (milliseconds): leases compare the daemons'
    /// clocks, so the daemon warns when its host's clock is far from the server's.
    public func clockSkew(now: UnixMillis) throws -> Int64 {
        try locked { db in
            Int64(try Self.scalar(db, "SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint")) - now
        }
    }
}

/// Brings a PostgreSQL database to the latest schema, recorded in `tiktok_forwarder_schema`,
/// under an advisory lock: several daemons starting at once migrate it once.
public enum PostgresMigrator {
    /// Session advisory lock key ("tkfwd" in ASCII), held while migrating.
    static let lockKey: Int64 = 0x746B_6677_64

    public static var latestVersion: Int { embeddedPostgresMigrations.last?.version ?? 0 }

    /// The schema version of the database (0: no outbox yet).
    public static func version(_ db: PostgresConnection) throws -> Int {
        let table = try db.query("SELECT to_regclass('tiktok_forwarder_schema') IS NOT NULL")
        guard table.bool(0, 0) else { return 0 }
        let version = try db.query("SELECT coalesce(max(version), 0) FROM tiktok_forwarder_schema")
        return version.int(0, 0)
    }

    @discardableResult
    public static func migrate(_ db: PostgresConnection, migrations: [Migration] = embeddedPostgresMigrations) throws -> [Int] {
        let latest = migrations.last?.version ?? 0
        try db.execute("SELECT pg_advisory_lock(\(lockKey))")
        defer { try? db.execute("SELECT pg_advisory_unlock(\(lockKey))") }
        var current = try version(db)
        if current > latest { throw MigrationError.newerSchema(database: current, binary: latest) }
        if current == 0 {
            let taken = try db.query("""
                SELECT string_agg(c.relname, ', ') FROM pg_class c
                WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('outbox', 'row_state', 'dead_letters', 'daemon_status')
                """)
            if let names = taken.optionalString(0, 0) {
                throw PostgresError(message: "schema \(try db.query("SELECT current_schema()").string(0, 0)) already has \(names), not made by tiktok-forwarder: give the forwarder its own schema (options=-csearch_path%3Dtiktok_forwarder in the URI, after CREATE SCHEMA tiktok_forwarder)")
            }
        }
        var applied: [Int] = []
        for migration in migrations where migration.version > current {
            try db.transaction {
                try db.execute("""
                    CREATE TABLE IF NOT EXISTS tiktok_forwarder_schema (
                        version    integer     PRIMARY KEY,
                        name       text        NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())
                    """)
                try db.execute(migration.sql)
                try db.query("INSERT INTO tiktok_forwarder_schema (version, name) VALUES ($1, $2)", [String(migration.version), migration.name])
            }
            applied.append(migration.version)
            current = migration.version
        }
        return applied
    }
}
