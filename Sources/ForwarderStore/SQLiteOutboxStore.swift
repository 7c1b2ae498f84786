import ForwarderCore
import Foundation

/// The outbox in a SQLite file shared with the producers.
///
/// One connection, serialised by a lock; each operation is one short transaction and none
/// spans network I/O. Give each delivery worker its own store for parallel claims.
public final class SQLiteOutboxStore: OutboxStore, @unchecked Sendable {
    private let connection: SQLiteConnection
    private let lock = NSLock()
    public let path: String

    /// Opens the database at `path` and migrates it to the latest schema.
    /// - Parameter fullSync: fsync every commit; for producers (see ``SQLiteConnection``).
    public init(path: String, busyTimeoutMillis: Int32 = 5_000, migrate: Bool = true, fullSync: Bool = false) throws {
        self.path = path
        connection = try SQLiteConnection(path: path, busyTimeoutMillis: busyTimeoutMillis, fullSync: fullSync)
        if migrate {
            try Migrator.migrate(connection)
        } else {
            let version = try connection.userVersion
            if version > Migrator.latestVersion {
                throw MigrationError.newerSchema(database: version, binary: Migrator.latestVersion)
            }
        }
    }

    private func locked<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        lock.lock()
        defer {
            connection.resetStatements()
            lock.unlock()
        }
        return try body(connection)
    }

    // MARK: - Producers

    public func enqueue(_ events: [NewEvent], now: UnixMillis) throws -> EnqueueResult {
        try locked { db in
            try db.writeTransaction {
                let insert = try db.statement("""
                    INSERT INTO outbox (event_id, payload, created_at, destination) VALUES (?1, ?2, ?3, ?4)
                    ON CONFLICT (event_id) DO NOTHING
                    """)
                var result = EnqueueResult()
                for event in events {
                    insert.reset()
                    try insert.bind(1, event.eventID).bind(2, event.payload).bind(3, now).bind(4, event.destination)
                    try insert.run()
                    if db.changes == 1 { result.inserted += 1 } else { result.duplicates += 1 }
                }
                return result
            }
        }
    }

    // MARK: - The delivery cycle

    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool, route: Route?) throws -> [ClaimedRow] {
        try locked { db in
            // A read first: an idle daemon polls every linger, and a read neither takes the
            // write lock producers need nor writes anything.
            let due = try db.statement(route == nil
                ? "SELECT EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1)"
                : """
                  SELECT EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND destination = ?2 AND next_attempt_at <= ?1)
                      OR (?3 AND EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND destination IS NULL AND next_attempt_at <= ?1))
                  """)
            try due.bind(1, now)
            if let route { try due.bind(2, route.name).bind(3, route.includingUnrouted ? 1 : 0) }
            guard try due.step(), due.int(0) == 1 else { return [] }
            due.reset()
            // Any destination (?10 NULL), or one (and NULL rows with ?11): for the suspects'
            // queries, whose partial index is small.
            let routed = "(?10 IS NULL OR destination = ?10 OR (?11 AND destination IS NULL))"
            func bindRoute(_ statement: SQLiteStatement) throws {
                try statement.bind(10, route?.name).bind(11, route?.includingUnrouted == true ? 1 : 0)
            }
            return try db.writeTransaction {
                // Suspects — rows whose last claim ended without a result (the daemon crashed,
                // was killed or hung while holding them) — go before any other row, in groups
                // that halve with every such claim (limit >> unsettled_claims): a row that
                // crashes the daemon is alone after ~log2(limit) crashes. A group claim of more
                // than one row is not counted as an attempt (it is a bisection step, and its
                // innocent rows must keep their budget); a claim of one row is.
                if suspects {
                    let first = try db.statement("""
                        SELECT unsettled_claims FROM outbox
                        WHERE state = 'pending' AND unsettled_claims > 0 AND next_attempt_at <= ?1 AND \(routed)
                        ORDER BY next_attempt_at, id
                        LIMIT 1
                        """)
                    try first.bind(1, now)
                    try bindRoute(first)
                    if try first.step() {
                        let unsettled = first.int(0)
                        first.reset()
                        let group = max(1, limit >> min(unsettled, 30))
                        let ids = try db.statement("""
                            SELECT id FROM outbox
                            WHERE state = 'pending' AND unsettled_claims = ?1 AND next_attempt_at <= ?2 AND \(routed)
                            ORDER BY next_attempt_at, id
                            LIMIT ?3
                            """)
                        try ids.bind(1, unsettled).bind(2, now).bind(3, group)
                        try bindRoute(ids)
                        var picked: [Int64] = []
                        while try ids.step() { picked.append(ids.int64(0)) }
                        let claimGroup = try db.statement("""
                            UPDATE outbox
                            SET state = 'inflight', attempts = attempts + (?4 AND attempts < 9223372036854775807),
                                lease_owner = ?1, lease_expires_at = ?2
                            WHERE id IN (SELECT value FROM json_each(?3))
                            RETURNING id, event_id, payload, created_at, attempts, first_sent_at, unsettled_claims
                            """)
                        try claimGroup.bind(1, owner).bind(2, leaseUntil).bind(3, jsonArray(picked)).bind(4, picked.count == 1 ? 1 : 0)
                        var rows: [ClaimedRow] = []
                        while try claimGroup.step() { rows.append(Self.claimedRow(claimGroup)) }
                        rows.sort { $0.id < $1.id }
                        return rows
                    }
                }
                // One destination: its rows and (for the default) the NULL ones, each an
                // ordered seek in outbox_pending_destination, merged. (An OR in one WHERE
                // would sort every due row of the outbox on each claim.)
                let candidates = route == nil
                    ? """
                      SELECT id FROM outbox
                      WHERE state = 'pending' AND next_attempt_at <= ?3 AND unsettled_claims = 0
                      ORDER BY next_attempt_at, id
                      LIMIT ?4
                      """
                    : """
                      SELECT id FROM (
                          SELECT id, next_attempt_at FROM (
                              SELECT id, next_attempt_at FROM outbox
                              WHERE state = 'pending' AND destination = ?5 AND next_attempt_at <= ?3 AND unsettled_claims = 0
                              ORDER BY next_attempt_at, id LIMIT ?4)
                          UNION ALL
                          SELECT id, next_attempt_at FROM (
                              SELECT id, next_attempt_at FROM outbox
                              WHERE ?6 AND state = 'pending' AND destination IS NULL AND next_attempt_at <= ?3 AND unsettled_claims = 0
                              ORDER BY next_attempt_at, id LIMIT ?4))
                      ORDER BY next_attempt_at, id
                      LIMIT ?4
                      """
                let claim = try db.statement("""
                    UPDATE outbox
                    SET state = 'inflight', attempts = attempts + (attempts < 9223372036854775807),
                        lease_owner = ?1, lease_expires_at = ?2
                    WHERE id IN (\(candidates))
                    RETURNING id, event_id, payload, created_at, attempts, first_sent_at, unsettled_claims
                    """)
                try claim.bind(1, owner).bind(2, leaseUntil).bind(3, now).bind(4, limit)
                if let route { try claim.bind(5, route.name).bind(6, route.includingUnrouted ? 1 : 0) }
                var rows: [ClaimedRow] = []
                rows.reserveCapacity(limit)
                while try claim.step() { rows.append(Self.claimedRow(claim)) }
                rows.sort { $0.id < $1.id }
                return rows
            }
        }
    }

    public func deadLetterUnknownDestinations(known: [String], now: UnixMillis) throws -> [String: Int] {
        try locked { db in
            // The distinct destinations of pending rows, one index seek each (a skip scan).
            let next = try db.statement("""
                SELECT destination FROM outbox
                WHERE state = 'pending' AND destination IS NOT NULL AND (?1 IS NULL OR destination > ?1)
                ORDER BY destination LIMIT 1
                """)
            var unknown: [String] = []
            var after: String?
            while true {
                next.reset()
                try next.bind(1, after)
                guard try next.step() else { break }
                let name = next.string(0)
                if !known.contains(name) { unknown.append(name) }
                after = name
            }
            guard !unknown.isEmpty else { return [:] }
            return try db.writeTransaction {
                let dead = try db.statement("""
                    UPDATE outbox
                    SET state = 'dead', finished_at = ?2, last_error = ?3, unsettled_claims = 0
                    WHERE state = 'pending' AND destination = ?1
                    """)
                var result: [String: Int] = [:]
                for name in unknown {
                    dead.reset()
                    try dead.bind(1, name).bind(2, now).bind(3, String(Route.unknownReason(name, known: known).prefix(1_000)))
                    try dead.run()
                    result[name] = db.changes
                }
                return result
            }
        }
    }

    public func destinationBacklogs() throws -> [DestinationBacklog] {
        try locked { db in
            let query = try db.statement("""
                SELECT destination, sum(state = 'pending'), sum(state = 'inflight'), sum(state = 'dead') FROM (
                    SELECT destination, state FROM outbox WHERE state = 'pending'
                    UNION ALL SELECT destination, state FROM outbox WHERE state = 'inflight'
                    UNION ALL SELECT destination, state FROM outbox WHERE state = 'dead')
                GROUP BY destination ORDER BY destination
                """)
            var result: [DestinationBacklog] = []
            while try query.step() {
                result.append(DestinationBacklog(destination: query.optionalString(0), pending: query.int(1), inflight: query.int(2), dead: query.int(3)))
            }
            return result
        }
    }

    private static func claimedRow(_ row: SQLiteStatement) -> ClaimedRow {
        // event_id is TikTok's deduplication key: a value that is not UTF-8 is never
        // "repaired" (that would change the key) but flagged, and the row dead-lettered.
        let id = row.bytes(1)
        let valid = String(validating: id, as: UTF8.self)
        return ClaimedRow(id: row.int64(0), eventID: valid ?? String(decoding: id, as: UTF8.self), payload: row.bytes(2),
                          createdAt: row.int64(3), attempts: row.int(4), firstSentAt: row.optionalInt64(5),
                          unsettledClaims: row.int(6), eventIDIsValidUTF8: valid != nil)
    }

    public func settle(_ settlements: [Settlement], owner: String, now: UnixMillis) throws -> Int {
        guard !settlements.isEmpty else { return 0 }
        return try locked { db in
            try db.writeTransaction {
                var changed = 0
                // Deliveries of a whole batch are one statement over a JSON array of ids; they
                // share one attempt record (the batch's response), taken from the first.
                let deliveredIDs = settlements.compactMap { s -> Int64? in
                    if case .delivered(let id, _) = s { return id } else { return nil }
                }
                if !deliveredIDs.isEmpty {
                    let delivered = try db.statement("""
                        UPDATE outbox
                        SET state = 'delivered', finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                            last_http_status = ?3, last_tiktok_code = ?4, last_error = NULL
                        WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'inflight' AND lease_owner = ?5
                        """)
                    let first = settlements.first { if case .delivered = $0 { return true } else { return false } }
                    var record = AttemptRecord()
                    if case .delivered(_, let r)? = first { record = r }
                    try delivered.bind(1, jsonArray(deliveredIDs)).bind(2, now)
                        .bind(3, record.httpStatus).bind(4, record.tiktokCode).bind(5, owner)
                    try delivered.run()
                    changed += db.changes
                    try Self.addFinished(db, state: "delivered", rows: db.changes)
                    try Self.keepSent(db, settlements, owner: owner)
                }
                var skippedRows = 0
                for settlement in settlements {
                    switch settlement {
                    case .delivered:
                        continue
                    case .retry(let id, let at, let record):
                        let retry = try db.statement("""
                            UPDATE outbox
                            SET state = 'pending', next_attempt_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                                last_http_status = ?3, last_tiktok_code = ?4, last_error = ?5,
                                first_sent_at = CASE WHEN ?6 THEN coalesce(first_sent_at, ?7) ELSE first_sent_at END
                            WHERE id = ?1 AND state = 'inflight' AND lease_owner = ?8
                            """)
                        try retry.bind(1, id).bind(2, at).bind(3, record.httpStatus).bind(4, record.tiktokCode)
                            .bind(5, record.error.map { boundedError($0) }).bind(6, record.mayHaveReachedTikTok ? 1 : 0)
                            .bind(7, now).bind(8, owner)
                        try retry.run()
                    case .dead(let id, let record):
                        let dead = try db.statement("""
                            UPDATE outbox
                            SET state = 'dead', finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                                last_http_status = ?3, last_tiktok_code = ?4, last_error = ?5,
                                first_sent_at = CASE WHEN ?6 THEN coalesce(first_sent_at, ?2) ELSE first_sent_at END
                            WHERE id = ?1 AND state = 'inflight' AND lease_owner = ?7
                            """)
                        try dead.bind(1, id).bind(2, now).bind(3, record.httpStatus).bind(4, record.tiktokCode)
                            .bind(5, boundedError(record.error ?? "dead-lettered"))
                            .bind(6, record.mayHaveReachedTikTok ? 1 : 0).bind(7, owner)
                        try dead.run()
                    case .skipped(let id, let reason):
                        let skipped = try db.statement("""
                            UPDATE outbox
                            SET state = 'skipped', finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                                last_error = ?3
                            WHERE id = ?1 AND state = 'inflight' AND lease_owner = ?4
                            """)
                        try skipped.bind(1, id).bind(2, now).bind(3, boundedError(reason)).bind(4, owner)
                        try skipped.run()
                        skippedRows += db.changes
                    }
                    changed += db.changes
                }
                try Self.addFinished(db, state: "skipped", rows: skippedRows)
                return changed
            }
        }
    }

    /// `delivery.keep_sent`: the events as sent, for the rows just delivered by `owner`.
    private static func keepSent(_ db: SQLiteConnection, _ settlements: [Settlement], owner: String) throws {
        var pairs: [JSON] = []
        for case .delivered(let id, let record) in settlements {
            if let sent = record.sentEvent { pairs.append(.array([.number(String(id)), .string(sent)])) }
        }
        guard !pairs.isEmpty else { return }
        let keep = try db.statement("""
            INSERT OR REPLACE INTO sent_events (id, event)
            SELECT value ->> 0, value ->> 1 FROM json_each(?1)
            """)
        try keep.bind(1, JSONWriter.encode(.array(pairs)))
        try keep.run()
    }

    /// Keeps `finished_counts` in step with the rows, in the caller's transaction.
    private static func addFinished(_ db: SQLiteConnection, state: String, rows: Int) throws {
        guard rows != 0 else { return }
        let add = try db.statement("UPDATE finished_counts SET rows = max(rows + ?2, 0) WHERE state = ?1")
        try add.bind(1, state).bind(2, rows)
        try add.run()
    }

    public func recountFinished() throws {
        try locked { db in
            try db.writeTransaction {
                try db.execute("""
                    UPDATE finished_counts
                    SET rows = (SELECT count(*) FROM outbox WHERE state IN ('delivered', 'skipped') AND state = finished_counts.state)
                    """)
            }
        }
    }

    public func release(ids: [Int64], owner: String, now: UnixMillis) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try locked { db in
            try db.writeTransaction {
                let release = try db.statement("""
                    UPDATE outbox
                    SET state = 'pending', attempts = max(attempts - 1, 0), next_attempt_at = ?2,
                        lease_owner = NULL, lease_expires_at = NULL
                    WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'inflight' AND lease_owner = ?3
                    """)
                try release.bind(1, jsonArray(ids)).bind(2, now).bind(3, owner)
                try release.run()
                return db.changes
            }
        }
    }

    public func reclaimLeases(owners: [String], now: UnixMillis) throws -> Int {
        guard !owners.isEmpty else { return 0 }
        return try locked { db in
            try db.writeTransaction {
                let reclaim = try db.statement("""
                    UPDATE outbox
                    SET state = 'pending', next_attempt_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                        unsettled_claims = unsettled_claims + 1
                    WHERE state = 'inflight' AND lease_owner IN (SELECT value FROM json_each(?2))
                    """)
                try reclaim.bind(1, now).bind(2, jsonStringArray(owners))
                try reclaim.run()
                return db.changes
            }
        }
    }

    public func unfinishedCount() throws -> Int {
        try locked { db in
            let count = try db.statement("SELECT (SELECT count(*) FROM outbox WHERE state = 'pending') + (SELECT count(*) FROM outbox WHERE state = 'inflight')")
            return try count.step() ? count.int(0) : 0
        }
    }

    /// The insert time of the oldest pending or in-flight row, as one SQL expression. Written
    /// as two subqueries so each reads its partial index: `state IN ('pending', 'inflight')`
    /// scans the whole table (0.07 s per million finished rows, measured).
    static let oldestUnfinished = """
        (SELECT min(coalesce(p, i), coalesce(i, p))
         FROM (SELECT (SELECT min(created_at) FROM outbox WHERE state = 'pending') AS p,
                      (SELECT min(created_at) FROM outbox WHERE state = 'inflight') AS i))
        """

    /// Caps this connection's page cache (KiB). Delivery workers use a small one: claimed rows
    /// are read once, and each worker's cache otherwise holds a whole batch of pages.
    public func setCacheSize(kibibytes: Int) throws {
        try locked { db in try db.execute("PRAGMA cache_size = -\(kibibytes)") }
    }

    public func backlog() throws -> Backlog {
        try locked { db in
            try db.readTransaction {
                // Each count is served by its partial index; finished rows are never scanned.
                let counts = try db.statement("""
                    SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'),
                           (SELECT count(*) FROM outbox WHERE state = 'inflight'),
                           (SELECT count(*) FROM outbox WHERE state = 'dead'),
                           \(Self.oldestUnfinished)
                    """)
                guard try counts.step() else { return Backlog() }
                return Backlog(pending: counts.int(0), inflight: counts.int(1), dead: counts.int(2), oldestCreatedAt: counts.optionalInt64(3))
            }
        }
    }

    public func daemonStatuses() throws -> [DaemonStatus] {
        try locked { db in try Self.daemons(db) }
    }

    private static func daemons(_ db: SQLiteConnection) throws -> [DaemonStatus] {
        let daemons = try db.statement("""
            SELECT owner, pid, started_at, heartbeat_at, paused_reason, in_flight_limit, delivery_rate
            FROM daemon_status ORDER BY started_at
            """)
        var result: [DaemonStatus] = []
        while try daemons.step() {
            result.append(DaemonStatus(owner: daemons.string(0), pid: daemons.int(1), startedAt: daemons.int64(2),
                                       heartbeatAt: daemons.int64(3), pausedReason: daemons.optionalString(4),
                                       inFlightLimit: daemons.optionalInt(5), deliveryRate: daemons.optionalDouble(6)))
        }
        return result
    }

    public func reclaimExpiredLeases(now: UnixMillis) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let reclaim = try db.statement("""
                    UPDATE outbox
                    SET state = 'pending', next_attempt_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                        unsettled_claims = unsettled_claims + 1
                    WHERE state = 'inflight' AND lease_expires_at <= ?1
                    """)
                try reclaim.bind(1, now)
                try reclaim.run()
                return db.changes
            }
        }
    }

    // MARK: - Operators

    public func redrive(_ selection: DeadSelection, now: UnixMillis) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let (condition, bind) = deadCondition(selection)
                let redrive = try db.statement("""
                    UPDATE outbox
                    SET state = 'pending', attempts = 0, next_attempt_at = ?1, finished_at = NULL, first_sent_at = NULL,
                        unsettled_claims = 0
                    WHERE state = 'dead' AND \(condition)
                    """)
                try redrive.bind(1, now)
                try bind(redrive)
                try redrive.run()
                return db.changes
            }
        }
    }

    public func purgeFinished(finishedBefore: UnixMillis, limit: Int) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let purge = try db.statement("""
                    DELETE FROM outbox
                    WHERE id IN (SELECT id FROM outbox
                                 WHERE state IN ('delivered', 'skipped') AND finished_at < ?1
                                 LIMIT ?2)
                    RETURNING state = 'delivered', id
                    """)
                try purge.bind(1, finishedBefore).bind(2, limit)
                var delivered = 0, skipped = 0
                var ids: [Int64] = []
                while try purge.step() {
                    if purge.int(0) == 1 { delivered += 1; ids.append(purge.int64(1)) } else { skipped += 1 }
                }
                purge.reset()
                if !ids.isEmpty {
                    let sent = try db.statement("DELETE FROM sent_events WHERE id IN (SELECT value FROM json_each(?1))")
                    try sent.bind(1, jsonArray(ids))
                    try sent.run()
                }
                try Self.addFinished(db, state: "delivered", rows: -delivered)
                try Self.addFinished(db, state: "skipped", rows: -skipped)
                return delivered + skipped
            }
        }
    }

    public func purgeDead(_ selection: DeadSelection, limit: Int) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let (condition, bind) = deadCondition(selection)
                let purge = try db.statement("""
                    DELETE FROM outbox
                    WHERE id IN (SELECT id FROM outbox WHERE state = 'dead' AND \(condition) LIMIT ?1)
                    """)
                try purge.bind(1, limit)
                try bind(purge)
                try purge.run()
                return db.changes
            }
        }
    }

    /// The SQL condition for a selection of dead rows; its parameter is `?9`.
    private func deadCondition(_ selection: DeadSelection) -> (String, (SQLiteStatement) throws -> Void) {
        switch selection {
        case .all:
            return ("1", { _ in })
        case .ids(let ids):
            return ("id IN (SELECT value FROM json_each(?9))", { try $0.bind(9, jsonArray(ids)) })
        case .eventIDs(let eventIDs):
            return ("event_id IN (SELECT value FROM json_each(?9))", { try $0.bind(9, jsonStringArray(eventIDs)) })
        case .deadSince(let time):
            return ("finished_at >= ?9", { try $0.bind(9, time) })
        case .deadBefore(let time):
            return ("finished_at < ?9", { try $0.bind(9, time) })
        }
    }

    public func stats(now: UnixMillis) throws -> OutboxStats {
        try locked { db in
            try db.readTransaction {
                var stats = OutboxStats()
                // Unfinished and dead rows from their partial indexes (they are few); finished
                // ones, which can be millions, from the maintained counts. No table scan.
                let counts = try db.statement("""
                    SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'),
                           (SELECT count(*) FROM outbox WHERE state = 'inflight'),
                           (SELECT count(*) FROM outbox WHERE state = 'dead'),
                           (SELECT rows FROM finished_counts WHERE state = 'delivered'),
                           (SELECT rows FROM finished_counts WHERE state = 'skipped'),
                           \(Self.oldestUnfinished)
                    """)
                if try counts.step() {
                    stats.counts = [.pending: counts.int(0), .inflight: counts.int(1), .dead: counts.int(2),
                                    .delivered: counts.int(3), .skipped: counts.int(4)]
                    stats.oldestPendingCreatedAt = counts.optionalInt64(5)
                }
                // Recent errors: the latest dead rows, and pending rows waiting on a retry.
                let errors = try db.statement("""
                    SELECT id, event_id, state, last_http_status, last_tiktok_code, last_error, finished_at
                    FROM (SELECT * FROM (SELECT * FROM outbox WHERE state = 'dead' ORDER BY finished_at DESC LIMIT 5)
                          UNION ALL
                          SELECT * FROM (SELECT * FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL
                                         ORDER BY next_attempt_at DESC LIMIT 5))
                    ORDER BY coalesce(finished_at, next_attempt_at) DESC
                    LIMIT 5
                    """)
                while try errors.step() {
                    stats.recentErrors.append(RecentError(
                        id: errors.int64(0), eventID: errors.string(1),
                        state: RowState(rawValue: errors.string(2)) ?? .dead,
                        httpStatus: errors.optionalInt(3), tiktokCode: errors.optionalInt(4),
                        error: errors.optionalString(5) ?? "", at: errors.optionalInt64(6)))
                }
                stats.daemons = try Self.daemons(db)
                stats.deliveryRate = stats.daemons.reduce(0) { $0 + ($1.deliveryRate ?? 0) }
                return stats
            }
        }
    }

    public func deadLetters(since: UnixMillis?, limit: Int?) throws -> [DeadLetter] {
        try locked { db in
            let list = try db.statement("""
                SELECT id, event_id, CASE WHEN json_valid(payload) THEN json_extract(payload, '$.event_name') END,
                       attempts, last_http_status, last_tiktok_code, last_error, created_at, finished_at, payload
                FROM outbox WHERE state = 'dead' AND finished_at >= ?2
                ORDER BY finished_at DESC, id DESC
                LIMIT ?1
                """)
            try list.bind(1, limit ?? -1).bind(2, since ?? .min)
            var letters: [DeadLetter] = []
            while try list.step() { letters.append(deadLetter(from: list)) }
            return letters
        }
    }

    public func deadLetter(_ key: String) throws -> DeadLetter? {
        try locked { db in
            let one = try db.statement("""
                SELECT id, event_id, CASE WHEN json_valid(payload) THEN json_extract(payload, '$.event_name') END,
                       attempts, last_http_status, last_tiktok_code, last_error, created_at, finished_at, payload
                FROM outbox WHERE state = 'dead' AND (event_id = ?1 OR id = CAST(?1 AS INTEGER))
                ORDER BY event_id = ?1 DESC
                LIMIT 1
                """)
            try one.bind(1, key)
            return try one.step() ? deadLetter(from: one) : nil
        }
    }

    public func row(_ key: String) throws -> OutboxRow? {
        try locked { db in
            let one = try db.statement("""
                SELECT o.id, o.event_id, o.state, o.attempts, o.created_at, o.next_attempt_at, o.finished_at, o.lease_owner,
                       o.lease_expires_at, o.last_http_status, o.last_tiktok_code, o.last_error, o.payload, s.event
                FROM outbox o LEFT JOIN sent_events s ON s.id = o.id
                WHERE o.event_id = ?1 OR o.id = CAST(?1 AS INTEGER)
                ORDER BY o.event_id = ?1 DESC
                LIMIT 1
                """)
            try one.bind(1, key)
            guard try one.step() else { return nil }
            return OutboxRow(id: one.int64(0), eventID: one.string(1), state: RowState(rawValue: one.string(2)) ?? .pending,
                             attempts: one.int(3), createdAt: one.int64(4), nextAttemptAt: one.int64(5), finishedAt: one.optionalInt64(6),
                             leaseOwner: one.optionalString(7), leaseExpiresAt: one.optionalInt64(8), httpStatus: one.optionalInt(9),
                             tiktokCode: one.optionalInt(10), error: one.optionalString(11), payload: one.string(12),
                             sentEvent: one.optionalString(13))
        }
    }

    private func deadLetter(from row: SQLiteStatement) -> DeadLetter {
        DeadLetter(id: row.int64(0), eventID: row.string(1), eventName: row.optionalString(2), attempts: row.int(3),
                   httpStatus: row.optionalInt(4), tiktokCode: row.optionalInt(5), error: row.optionalString(6),
                   createdAt: row.int64(7), deadSince: row.int64(8), payload: row.string(9))
    }

    public func recordDaemonStatus(_ status: DaemonStatus) throws {
        try locked { db in
            let upsert = try db.statement("""
                INSERT INTO daemon_status (owner, pid, started_at, heartbeat_at, paused_reason, in_flight_limit, delivery_rate)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                    paused_reason = excluded.paused_reason, in_flight_limit = excluded.in_flight_limit,
                    delivery_rate = excluded.delivery_rate
                """)
            try upsert.bind(1, status.owner).bind(2, status.pid).bind(3, status.startedAt).bind(4, status.heartbeatAt)
                .bind(5, status.pausedReason).bind(6, status.inFlightLimit).bind(7, status.deliveryRate)
            try upsert.run()
        }
    }

    public func removeDaemonStatus(owner: String) throws {
        try locked { db in
            let delete = try db.statement("DELETE FROM daemon_status WHERE owner = ?1")
            try delete.bind(1, owner)
            try delete.run()
        }
    }

    /// Counts pending rows due by `now` (cheap: served by the claim index).
    public func dueCount(now: UnixMillis) throws -> Int {
        try locked { db in
            let due = try db.statement("SELECT count(*) FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1")
            try due.bind(1, now)
            return try due.step() ? due.int(0) : 0
        }
    }
}

private func jsonArray(_ ids: [Int64]) -> String {
    "[" + ids.map(String.init).joined(separator: ",") + "]"
}

private func jsonStringArray(_ values: [String]) -> String {
    var writer = JSONWriter(capacity: values.count * 24)
    writer.value(.array(values.map(JSON.string)))
    return String(decoding: writer.bytes, as: UTF8.self)
}
