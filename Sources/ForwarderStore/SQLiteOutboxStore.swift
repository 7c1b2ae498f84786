import ForwarderCore
import Foundation

/// The outbox in a SQLite file shared with the producers.
///
/// One connection, serialised by a lock; each operation is one short transaction and none
/// spans network I/O. Give each delivery worker its own store for parallel claims.
///
/// Batch leases (migration 0006): producers' rows are written once, by their INSERT. A claim
/// of fresh rows records one `batches` row for a run of one stream (the rows whose
/// `destination` holds one value) and moves that stream's cursor; a batch delivered whole is
/// settled by updating that one row. Only exceptions — retries, dead letters, skips, released
/// or reclaimed rows, rows of a batch settled piecemeal — get a `row_state` row, which keeps
/// the per-row state machine of old. So the daemon's writes per event are a few bytes, not a
/// rewrite of the ~1.2 KB record, and producers rarely wait for the write lock.
public final class SQLiteOutboxStore: OutboxStore, @unchecked Sendable {
    private let connection: SQLiteConnection
    private let lock = NSLock()
    public let path: String
    /// Fresh rows this store claimed and has not settled: row id → batch id. Only the store
    /// that claimed a batch settles it (each delivery worker has its own), so this is how a
    /// settle finds its batch without a query per row.
    private var batchOf: [Int64: Int64] = [:]

    /// A batch a claim recorded: its id and its rows' ids, ascending.
    private struct ClaimedRange {
        var batch: Int64
        var ids: [Int64]
    }

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

    // MARK: - Streams and cursors

    /// A stream's key in `cursors`: '' for the NULL destination, '=' + name otherwise.
    private static func key(_ stream: String?) -> String { stream.map { "=" + $0 } ?? "" }

    /// The streams a claim for `route` reads (nil: every stream with rows).
    private static func streams(_ db: SQLiteConnection, _ route: Route?) throws -> [String?] {
        if let route { return route.includingUnrouted ? [route.name, nil] : [route.name] }
        return try allStreams(db)
    }

    /// Every destination value present in the outbox, NULL first: one index seek each.
    private static func allStreams(_ db: SQLiteConnection) throws -> [String?] {
        var result: [String?] = []
        let null = try db.statement("SELECT EXISTS (SELECT 1 FROM outbox WHERE destination IS NULL)")
        if try null.step(), null.int(0) == 1 { result.append(nil) }
        let next = try db.statement("""
            SELECT destination FROM outbox
            WHERE destination IS NOT NULL AND (?1 IS NULL OR destination > ?1)
            ORDER BY destination LIMIT 1
            """)
        var after: String?
        while true {
            next.reset()
            try next.bind(1, after)
            guard try next.step() else { break }
            let name = next.string(0)
            result.append(name)
            after = name
        }
        return result
    }

    private static func cursor(_ db: SQLiteConnection, _ stream: String?) throws -> Int64 {
        let read = try db.statement("SELECT last_id FROM cursors WHERE stream_key = ?1")
        try read.bind(1, key(stream))
        return try read.step() ? read.int64(0) : 0
    }

    private static func advance(_ db: SQLiteConnection, _ stream: String?, to id: Int64) throws {
        let write = try db.statement("""
            INSERT INTO cursors (stream_key, last_id) VALUES (?1, ?2)
            ON CONFLICT (stream_key) DO UPDATE SET last_id = max(last_id, excluded.last_id)
            """)
        try write.bind(1, key(stream)).bind(2, id)
        try write.run()
    }

    /// The insert times of fresh rows of `stream` after its cursor (not yet claimed, no state
    /// of their own), oldest id first.
    private static let freshCreatedAt = """
        SELECT created_at FROM outbox
        WHERE destination IS ?1 AND id > ?2 AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = outbox.id)
        ORDER BY id LIMIT ?3
        """

    /// The ids of fresh rows of `stream` after its cursor (the index alone).
    private static let freshIDs = """
        SELECT id FROM outbox
        WHERE destination IS ?1 AND id > ?2 AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = outbox.id)
        ORDER BY id LIMIT ?3
        """

    /// Pending rows in row_state, by route (?10 NULL: any; else that name, and NULL rows with ?11).
    private static let routed = "(?10 IS NULL OR o.destination = ?10 OR (?11 AND o.destination IS NULL))"

    private static func bindRoute(_ statement: SQLiteStatement, _ route: Route?) throws {
        try statement.bind(10, route?.name).bind(11, route?.includingUnrouted == true ? 1 : 0)
    }

    /// Fresh (never claimed) rows, per stream: those after its cursor without a row_state row.
    private static func freshCount(_ db: SQLiteConnection) throws -> [(stream: String?, rows: Int)] {
        let all = try allStreams(db)
        let above = try db.statement("SELECT count(*) FROM outbox WHERE destination IS ?1 AND id > ?2")
        let stated = try db.statement("SELECT count(*) FROM row_state r JOIN outbox o ON o.id = r.id WHERE r.id > ?2 AND o.destination IS ?1")
        var result: [(String?, Int)] = []
        for stream in all {
            let cursor = try cursor(db, stream)
            above.reset()
            try above.bind(1, stream).bind(2, cursor)
            stated.reset()
            try stated.bind(1, stream).bind(2, cursor)
            let rows = (try above.step() ? above.int(0) : 0) - (try stated.step() ? stated.int(0) : 0)
            result.append((stream, max(0, rows)))
        }
        return result
    }

    private static func scalar(_ db: SQLiteConnection, _ sql: String, _ bind: (SQLiteStatement) throws -> Void = { _ in }) throws -> Int {
        let query = try db.statement(sql)
        try bind(query)
        return try query.step() ? query.int(0) : 0
    }

    private static func inflightCount(_ db: SQLiteConnection) throws -> Int {
        try scalar(db, "SELECT coalesce(sum(rows - settled), 0) FROM batches WHERE finished_at IS NULL")
            + scalar(db, "SELECT count(*) FROM row_state WHERE state = 'inflight'")
    }

    private static func pendingCount(_ db: SQLiteConnection) throws -> Int {
        try freshCount(db).reduce(0) { $0 + $1.rows } + scalar(db, "SELECT count(*) FROM row_state WHERE state = 'pending'")
    }

    /// The insert time of the oldest row not yet final: the first fresh row of each stream
    /// (ids follow insert order), the rows with a pending or in-flight state of their own, and
    /// the first row of each batch in flight.
    private static func oldestUnfinished(_ db: SQLiteConnection) throws -> UnixMillis? {
        var oldest: UnixMillis?
        func consider(_ value: UnixMillis?) { if let value { oldest = min(oldest ?? value, value) } }
        let first = try db.statement(freshCreatedAt)
        for stream in try allStreams(db) {
            first.reset()
            try first.bind(1, stream).bind(2, try cursor(db, stream)).bind(3, 1)
            if try first.step() { consider(first.int64(0)) }
        }
        for sql in ["SELECT min(o.created_at) FROM row_state r JOIN outbox o ON o.id = r.id WHERE r.state = 'pending'",
                    "SELECT min(o.created_at) FROM row_state r JOIN outbox o ON o.id = r.id WHERE r.state = 'inflight'",
                    "SELECT min(o.created_at) FROM batches b JOIN outbox o ON o.id = b.first_id WHERE b.finished_at IS NULL"] {
            let query = try db.statement(sql)
            if try query.step() { consider(query.optionalInt64(0)) }
        }
        return oldest
    }

    // MARK: - The delivery cycle

    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool, route: Route?) throws -> [ClaimedRow] {
        guard limit > 0 else { return [] }
        return try locked { db in
            let streams = try Self.streams(db, route)
            // A read first: an idle daemon polls every linger, and a read neither takes the
            // write lock producers need nor writes anything.
            let due = try db.statement("""
                SELECT EXISTS (SELECT 1 FROM row_state r JOIN outbox o ON o.id = r.id
                               WHERE r.state = 'pending' AND r.next_attempt_at <= ?1 AND \(Self.routed))
                """)
            try due.bind(1, now)
            try Self.bindRoute(due, route)
            var anything = try due.step() && due.int(0) == 1
            if !anything {
                let fresh = try db.statement(Self.freshIDs)
                for stream in streams where !anything {
                    fresh.reset()
                    try fresh.bind(1, stream).bind(2, try Self.cursor(db, stream)).bind(3, 1)
                    anything = try fresh.step()
                }
            }
            guard anything else { return [] }
            db.resetStatements()
            // Only SQL runs under the write lock: which rows went into which batch is recorded
            // in batchOf after the commit (a dictionary write per row; with the settle's grouping,
            // ~40 % of the writer thread's samples when it ran inside), so a rolled-back claim
            // records nothing.
            let claimed: (rows: [ClaimedRow], ranges: [ClaimedRange], unbatched: [Int64]) = try db.writeTransaction {
                // Suspects — rows whose last claim ended without a result (the daemon crashed,
                // was killed or hung while holding them) — go before any other row, in groups
                // that halve with every such claim (limit >> unsettled_claims): a row that
                // crashes the daemon is alone after ~log2(limit) crashes. A group claim of more
                // than one row is not counted as an attempt (it is a bisection step, and its
                // innocent rows must keep their budget); a claim of one row is.
                if suspects {
                    let first = try db.statement("""
                        SELECT r.unsettled_claims FROM row_state r JOIN outbox o ON o.id = r.id
                        WHERE r.state = 'pending' AND r.unsettled_claims > 0 AND r.next_attempt_at <= ?1 AND \(Self.routed)
                        ORDER BY r.next_attempt_at, r.id
                        LIMIT 1
                        """)
                    try first.bind(1, now)
                    try Self.bindRoute(first, route)
                    if try first.step() {
                        let unsettled = first.int(0)
                        first.reset()
                        let group = max(1, limit >> min(unsettled, 30))
                        let ids = try db.statement("""
                            SELECT r.id FROM row_state r JOIN outbox o ON o.id = r.id
                            WHERE r.state = 'pending' AND r.unsettled_claims = ?1 AND r.next_attempt_at <= ?2 AND \(Self.routed)
                            ORDER BY r.next_attempt_at, r.id
                            LIMIT ?3
                            """)
                        try ids.bind(1, unsettled).bind(2, now).bind(3, group)
                        try Self.bindRoute(ids, route)
                        var picked: [Int64] = []
                        while try ids.step() { picked.append(ids.int64(0)) }
                        return (try Self.claimStated(db, picked, owner: owner, leaseUntil: leaseUntil, counted: picked.count == 1), [], picked)
                    }
                }
                // Rows with a state of their own that are due (retries, redriven or released
                // rows): few, and waiting longest, so they go first.
                let dueIDs = try db.statement("""
                    SELECT r.id FROM row_state r JOIN outbox o ON o.id = r.id
                    WHERE r.state = 'pending' AND r.unsettled_claims = 0 AND r.next_attempt_at <= ?1 AND \(Self.routed)
                    ORDER BY r.next_attempt_at, r.id
                    LIMIT ?2
                    """)
                try dueIDs.bind(1, now).bind(2, limit)
                try Self.bindRoute(dueIDs, route)
                var picked: [Int64] = []
                while try dueIDs.step() { picked.append(dueIDs.int64(0)) }
                let rows = try Self.claimStated(db, picked, owner: owner, leaseUntil: leaseUntil, counted: true)

                // Fresh rows, oldest first across the route's streams; one batch per stream.
                // Only their ids are read here, from the index: the payloads (~1.2 MB a batch)
                // are read after the commit, so the write lock producers wait for is held for
                // the bookkeeping alone.
                let room = limit - rows.count
                var ranges: [ClaimedRange] = []
                if room > 0 {
                    var candidates: [(stream: String?, id: Int64)] = []
                    let fresh = try db.statement(Self.freshIDs)
                    for stream in streams {
                        fresh.reset()
                        try fresh.bind(1, stream).bind(2, try Self.cursor(db, stream)).bind(3, room)
                        while try fresh.step() { candidates.append((stream, fresh.int64(0))) }
                    }
                    if streams.count > 1 { candidates.sort { $0.id < $1.id } }
                    let kept = candidates.prefix(room)
                    let insert = try db.statement("""
                        INSERT INTO batches (stream, first_id, last_id, rows, lease_owner, lease_expires_at, claimed_at)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                        RETURNING id
                        """)
                    for stream in streams {
                        let ids = kept.filter { $0.stream == stream }.map(\.id)
                        guard let low = ids.first, let high = ids.last else { continue }
                        insert.reset()
                        try insert.bind(1, stream).bind(2, low).bind(3, high).bind(4, ids.count).bind(5, owner).bind(6, leaseUntil).bind(7, now)
                        guard try insert.step() else { continue }
                        let batch = insert.int64(0)
                        insert.reset()
                        try Self.advance(db, stream, to: high)
                        ranges.append(ClaimedRange(batch: batch, ids: ids))
                    }
                }
                return (rows, ranges, picked)
            }
            for id in claimed.unbatched { batchOf[id] = nil }
            for range in claimed.ranges {
                for id in range.ids { batchOf[id] = range.batch }
            }
            // The claimed rows are this owner's now, and a producer's row is never updated:
            // reading them outside the transaction reads what the claim claimed.
            var rows = claimed.rows
            let read = try db.statement("SELECT id, event_id, payload, created_at FROM outbox WHERE id BETWEEN ?1 AND ?2 ORDER BY id")
            for range in claimed.ranges {
                read.reset()
                try read.bind(1, range.ids[0]).bind(2, range.ids[range.ids.count - 1])
                // Both in ascending id order: the range's rows of other streams are stepped over.
                var next = 0
                while try read.step() {
                    let rowID = read.int64(0)
                    while next < range.ids.count, range.ids[next] < rowID { next += 1 }
                    guard next < range.ids.count, range.ids[next] == rowID else { continue }
                    next += 1
                    let id = read.bytes(1)
                    let valid = String(validating: id, as: UTF8.self)
                    rows.append(ClaimedRow(id: rowID, eventID: valid ?? String(decoding: id, as: UTF8.self), payload: read.bytes(2),
                                           createdAt: read.int64(3), attempts: 1, firstSentAt: nil, unsettledClaims: 0, eventIDIsValidUTF8: valid != nil))
                }
            }
            rows.sort { $0.id < $1.id }
            return rows
        }
    }

    /// Claims rows that have a row_state row: each becomes inflight under `owner`, one attempt
    /// more when `counted`.
    private static func claimStated(_ db: SQLiteConnection, _ ids: [Int64], owner: String, leaseUntil: UnixMillis, counted: Bool) throws -> [ClaimedRow] {
        guard !ids.isEmpty else { return [] }
        let claim = try db.statement("""
            UPDATE row_state
            SET state = 'inflight', attempts = attempts + (?4 AND attempts < 9223372036854775807),
                lease_owner = ?1, lease_expires_at = ?2
            WHERE id IN (SELECT value FROM json_each(?3))
            RETURNING (SELECT event_id FROM outbox WHERE outbox.id = row_state.id), (SELECT payload FROM outbox WHERE outbox.id = row_state.id),
                      (SELECT created_at FROM outbox WHERE outbox.id = row_state.id), id, attempts, first_sent_at, unsettled_claims
            """)
        try claim.bind(1, owner).bind(2, leaseUntil).bind(3, jsonArray(ids)).bind(4, counted ? 1 : 0)
        var rows: [ClaimedRow] = []
        while try claim.step() {
            // event_id is TikTok's deduplication key: a value that is not UTF-8 is never
            // "repaired" (that would change the key) but flagged, and the row dead-lettered.
            let id = claim.bytes(0)
            let valid = String(validating: id, as: UTF8.self)
            rows.append(ClaimedRow(id: claim.int64(3), eventID: valid ?? String(decoding: id, as: UTF8.self), payload: claim.bytes(1),
                                   createdAt: claim.int64(2), attempts: claim.int(4), firstSentAt: claim.optionalInt64(5),
                                   unsettledClaims: claim.int(6), eventIDIsValidUTF8: valid != nil))
        }
        return rows
    }

    public func settle(_ settlements: [Settlement], owner: String, now: UnixMillis) throws -> Int {
        guard !settlements.isEmpty else { return 0 }
        return try locked { db in
            // Sorted out before the write lock is taken, and batchOf updated after the commit:
            // only SQL runs under the lock producers wait for.
            let (groups, stated) = batchGroups(settlements, id: \.id)
            let sent = Self.sentEvents(settlements)
            let deliveredIDs = stated.compactMap { if case .delivered(let id, _) = $0 { return id } else { return nil } }
            let firstDelivered = stated.lazy.compactMap { if case .delivered(_, let record) = $0 { return record } else { return nil } }.first
            let (changed, done) = try db.writeTransaction { () -> (Int, [Int]) in
                var changed = 0
                var done: [Int] = []  // the groups whose rows leave batchOf
                if let sent { try Self.keepSent(db, sent) }
                var delivered = 0, skipped = 0
                for (index, group) in groups.enumerated() {
                    let lookup = try Self.openBatch(db, group.batch, owner: owner)
                    if lookup.forgetsRows { done.append(index) }
                    guard case .open(let rows, let settled) = lookup else { continue }
                    let finishing = settled + group.items.count >= rows
                    // Delivered with the batch's last settle: implicit (the batch's state). Any
                    // other outcome, or a delivery before the batch is done: a row_state row.
                    var implicit = 0
                    for settlement in group.items {
                        switch settlement {
                        case .delivered:
                            delivered += 1
                            if finishing { implicit += 1; continue }
                        case .skipped: skipped += 1
                        case .retry, .dead: break
                        }
                        try Self.insertState(db, settlement, attempts: 1, now: now)
                    }
                    let update = try db.statement("""
                        UPDATE batches
                        SET settled = settled + ?2, delivered = delivered + ?3,
                            finished_at = CASE WHEN ?4 THEN ?5 END,
                            lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END,
                            lease_expires_at = CASE WHEN ?4 THEN NULL ELSE lease_expires_at END
                        WHERE id = ?1
                        """)
                    try update.bind(1, group.batch).bind(2, group.items.count).bind(3, implicit).bind(4, finishing ? 1 : 0).bind(5, now)
                    try update.run()
                    changed += group.items.count
                }
                if !deliveredIDs.isEmpty, let record = firstDelivered {
                    let deliver = try db.statement("""
                        UPDATE row_state
                        SET state = 'delivered', finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                            last_http_status = ?3, last_tiktok_code = ?4, last_error = NULL
                        WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'inflight' AND lease_owner = ?5
                        """)
                    try deliver.bind(1, jsonArray(deliveredIDs)).bind(2, now).bind(3, record.httpStatus).bind(4, record.tiktokCode).bind(5, owner)
                    try deliver.run()
                    changed += db.changes
                    delivered += db.changes
                }
                for settlement in stated {
                    switch settlement {
                    case .delivered:
                        continue
                    case .retry(let id, let at, let record):
                        let retry = try db.statement("""
                            UPDATE row_state
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
                            UPDATE row_state
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
                        let skip = try db.statement("""
                            UPDATE row_state
                            SET state = 'skipped', finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL, unsettled_claims = 0,
                                last_error = ?3
                            WHERE id = ?1 AND state = 'inflight' AND lease_owner = ?4
                            """)
                        try skip.bind(1, id).bind(2, now).bind(3, boundedError(reason)).bind(4, owner)
                        try skip.run()
                        skipped += db.changes
                    }
                    changed += db.changes
                }
                try Self.addFinished(db, state: "delivered", rows: delivered)
                try Self.addFinished(db, state: "skipped", rows: skipped)
                return (changed, done)
            }
            forget(groups, done, id: \.id)
            return changed
        }
    }

    /// `items` by the batch that holds each (in batch order), and those in no batch.
    private func batchGroups<T>(_ items: [T], id: (T) -> Int64) -> (groups: [(batch: Int64, items: [T])], stated: [T]) {
        var byBatch: [Int64: [T]] = [:]
        var stated: [T] = []
        for item in items {
            if let batch = batchOf[id(item)] { byBatch[batch, default: []].append(item) } else { stated.append(item) }
        }
        return (byBatch.sorted { $0.key < $1.key }.map { (batch: $0.key, items: $0.value) }, stated)
    }

    /// After a commit: the rows of the groups at `done` leave ``batchOf``.
    private func forget<T>(_ groups: [(batch: Int64, items: [T])], _ done: [Int], id: (T) -> Int64) {
        for index in done {
            for item in groups[index].items { batchOf[id(item)] = nil }
        }
    }

    /// What a settle or a release finds of a batch whose rows it was given.
    private enum BatchLookup {
        /// `owner` holds it open: its size and how many of its rows are settled.
        case open(rows: Int, settled: Int)
        /// Gone or finished (reclaimed, say): nothing to write for it.
        case closed
        /// Open under another owner's lease: fenced, nothing to write.
        case fenced

        /// Whether the rows leave ``batchOf`` once the transaction commits: this daemon is
        /// done with the batch (settled or released now, or closed under it). A fenced batch
        /// keeps them.
        var forgetsRows: Bool {
            if case .fenced = self { return false }
            return true
        }
    }

    private static func openBatch(_ db: SQLiteConnection, _ batch: Int64, owner: String) throws -> BatchLookup {
        let open = try db.statement("SELECT rows, settled, lease_owner, finished_at IS NULL FROM batches WHERE id = ?1")
        try open.bind(1, batch)
        guard try open.step() else { return .closed }
        let (rows, settled, holder, isOpen) = (open.int(0), open.int(1), open.optionalString(2), open.int(3) == 1)
        open.reset()
        guard isOpen else { return .closed }
        guard holder == owner else { return .fenced }
        return .open(rows: rows, settled: settled)
    }

    /// The row_state row of a batch row that left the batch's fate: its outcome, with the
    /// attempts it has had (1: the batch's claim; 0: released, refunded).
    private static func insertState(_ db: SQLiteConnection, _ settlement: Settlement, attempts: Int, now: UnixMillis) throws {
        let insert = try db.statement("""
            INSERT OR REPLACE INTO row_state (id, state, attempts, next_attempt_at, first_sent_at, last_http_status, last_tiktok_code, last_error, finished_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
            """)
        let finished: UnixMillis? = now
        switch settlement {
        case .delivered(let id, let record):
            try insert.bind(1, id).bind(2, "delivered").bind(3, attempts).bind(4, Int64(0)).bind(5, Int64?.none)
                .bind(6, record.httpStatus).bind(7, record.tiktokCode).bind(8, String?.none).bind(9, finished)
        case .retry(let id, let at, let record):
            try insert.bind(1, id).bind(2, "pending").bind(3, attempts).bind(4, at).bind(5, record.mayHaveReachedTikTok ? now : nil)
                .bind(6, record.httpStatus).bind(7, record.tiktokCode).bind(8, record.error.map { boundedError($0) }).bind(9, UnixMillis?.none)
        case .dead(let id, let record):
            try insert.bind(1, id).bind(2, "dead").bind(3, attempts).bind(4, Int64(0)).bind(5, record.mayHaveReachedTikTok ? now : nil)
                .bind(6, record.httpStatus).bind(7, record.tiktokCode).bind(8, boundedError(record.error ?? "dead-lettered")).bind(9, finished)
        case .skipped(let id, let reason):
            try insert.bind(1, id).bind(2, "skipped").bind(3, attempts).bind(4, Int64(0)).bind(5, Int64?.none)
                .bind(6, Int?.none).bind(7, Int?.none).bind(8, boundedError(reason)).bind(9, finished)
        }
        try insert.run()
    }

    /// `delivery.keep_sent`: the events as sent of the rows delivered, as `[[id, event], …]`
    /// for ``keepSent(_:_:)``; `nil` when none was kept.
    private static func sentEvents(_ settlements: [Settlement]) -> String? {
        var pairs: [JSON] = []
        for case .delivered(let id, let record) in settlements {
            if let sent = record.sentEvent { pairs.append(.array([.number(String(id)), .string(sent)])) }
        }
        return pairs.isEmpty ? nil : JSONWriter.encode(.array(pairs))
    }

    private static func keepSent(_ db: SQLiteConnection, _ pairs: String) throws {
        let keep = try db.statement("""
            INSERT OR REPLACE INTO sent_events (id, event)
            SELECT value ->> 0, value ->> 1 FROM json_each(?1)
            """)
        try keep.bind(1, pairs)
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
        // Counted in a read transaction (the write lock producers need is not held while
        // ~5 M index entries are counted), then applied as a correction to the counts as they
        // stood in that snapshot: settles committed meanwhile keep their own increments.
        let (delivered, skipped, storedDelivered, storedSkipped) = try locked { db in
            try db.readTransaction {
                // Rows delivered with their batch: two range counts per batch, no per-row probe
                // (the rows in the range, from the covering index, less those with a row_state row).
                let batches = try db.statement("SELECT stream, first_id, last_id FROM batches WHERE finished_at IS NOT NULL")
                var ranges: [(String?, Int64, Int64)] = []
                while try batches.step() { ranges.append((batches.optionalString(0), batches.int64(1), batches.int64(2))) }
                let inRange = try db.statement("SELECT count(*) FROM outbox WHERE destination IS ?1 AND id BETWEEN ?2 AND ?3")
                let stated = try db.statement("""
                    SELECT count(*) FROM row_state r JOIN outbox o ON o.id = r.id WHERE r.id BETWEEN ?2 AND ?3 AND o.destination IS ?1
                    """)
                var delivered = 0
                for (stream, low, high) in ranges {
                    for (query, sign) in [(inRange, 1), (stated, -1)] {
                        query.reset()
                        try query.bind(1, stream).bind(2, low).bind(3, high)
                        if try query.step() { delivered += sign * query.int(0) }
                    }
                }
                delivered += try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'delivered'")
                return (delivered, try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'skipped'"),
                        try Self.scalar(db, "SELECT rows FROM finished_counts WHERE state = 'delivered'"),
                        try Self.scalar(db, "SELECT rows FROM finished_counts WHERE state = 'skipped'"))
            }
        }
        try locked { db in
            try db.writeTransaction {
                try Self.addFinished(db, state: "delivered", rows: delivered - storedDelivered)
                try Self.addFinished(db, state: "skipped", rows: skipped - storedSkipped)
            }
        }
    }

    public func release(ids: [Int64], owner: String, now: UnixMillis) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try locked { db in
            let (groups, stated) = batchGroups(ids, id: { $0 })
            let (changed, done) = try db.writeTransaction { () -> (Int, [Int]) in
                var changed = 0
                var done: [Int] = []
                for (index, (batch, rows)) in groups.enumerated() {
                    let lookup = try Self.openBatch(db, batch, owner: owner)
                    if lookup.forgetsRows { done.append(index) }
                    guard case .open(let size, let settled) = lookup else { continue }
                    let finishing = settled + rows.count >= size
                    // Back to pending with the attempt refunded: a retry due now, of their own.
                    for id in rows { try Self.insertState(db, .retry(id: id, at: now, AttemptRecord()), attempts: 0, now: now) }
                    let update = try db.statement("""
                        UPDATE batches
                        SET settled = settled + ?2, finished_at = CASE WHEN ?3 THEN ?4 END,
                            lease_owner = CASE WHEN ?3 THEN NULL ELSE lease_owner END,
                            lease_expires_at = CASE WHEN ?3 THEN NULL ELSE lease_expires_at END
                        WHERE id = ?1
                        """)
                    try update.bind(1, batch).bind(2, rows.count).bind(3, finishing ? 1 : 0).bind(4, now)
                    try update.run()
                    changed += rows.count
                }
                if !stated.isEmpty {
                    let release = try db.statement("""
                        UPDATE row_state
                        SET state = 'pending', attempts = max(attempts - 1, 0), next_attempt_at = ?2,
                            lease_owner = NULL, lease_expires_at = NULL
                        WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'inflight' AND lease_owner = ?3
                        """)
                    try release.bind(1, jsonArray(stated)).bind(2, now).bind(3, owner)
                    try release.run()
                    changed += db.changes
                }
                return (changed, done)
            }
            forget(groups, done, id: { $0 })
            return changed
        }
    }

    public func reclaimLeases(owners: [String], now: UnixMillis) throws -> Int {
        guard !owners.isEmpty else { return 0 }
        return try reclaim(now: now, rowCondition: "lease_owner IN (SELECT value FROM json_each(?2))",
                           batchCondition: "lease_owner IN (SELECT value FROM json_each(?2))") { try $0.bind(2, jsonStringArray(owners)) }
    }

    public func reclaimExpiredLeases(now: UnixMillis) throws -> Int {
        try reclaim(now: now, rowCondition: "lease_expires_at <= ?1", batchCondition: "lease_expires_at <= ?1") { _ in }
    }

    /// Returns the in-flight rows matching the conditions to pending: their attempt stays
    /// counted and their unsettled claims grow by one (they are suspects now). A batch's
    /// unsettled rows each get a row_state row (the batch is closed).
    private func reclaim(now: UnixMillis, rowCondition: String, batchCondition: String, bind: (SQLiteStatement) throws -> Void) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let rows = try db.statement("""
                    UPDATE row_state
                    SET state = 'pending', next_attempt_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                        unsettled_claims = unsettled_claims + 1
                    WHERE state = 'inflight' AND \(rowCondition)
                    """)
                try rows.bind(1, now)
                try bind(rows)
                try rows.run()
                var reclaimed = db.changes
                let open = try db.statement("SELECT id, stream, first_id, last_id FROM batches WHERE finished_at IS NULL AND \(batchCondition)")
                try open.bind(1, now)
                try bind(open)
                var batches: [(Int64, String?, Int64, Int64)] = []
                while try open.step() { batches.append((open.int64(0), open.optionalString(1), open.int64(2), open.int64(3))) }
                let suspects = try db.statement("""
                    INSERT INTO row_state (id, state, attempts, next_attempt_at, unsettled_claims)
                    SELECT id, 'pending', 1, ?4, 1 FROM outbox
                    WHERE destination IS ?1 AND id BETWEEN ?2 AND ?3 AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = outbox.id)
                    """)
                let close = try db.statement("""
                    UPDATE batches SET settled = rows, finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1
                    """)
                let closed = Set(batches.map(\.0))
                if !closed.isEmpty { batchOf = batchOf.filter { !closed.contains($0.value) } }
                for (batch, stream, low, high) in batches {
                    suspects.reset()
                    try suspects.bind(1, stream).bind(2, low).bind(3, high).bind(4, now)
                    try suspects.run()
                    reclaimed += db.changes
                    close.reset()
                    try close.bind(1, batch).bind(2, now)
                    try close.run()
                }
                return reclaimed
            }
        }
    }

    public func unfinishedCount() throws -> Int {
        try locked { db in try db.readTransaction { try Self.pendingCount(db) + Self.inflightCount(db) } }
    }

    /// Caps this connection's page cache (KiB). Delivery workers use a small one: claimed rows
    /// are read once, and each worker's cache otherwise holds a whole batch of pages.
    public func setCacheSize(kibibytes: Int) throws {
        try locked { db in try db.execute("PRAGMA cache_size = -\(kibibytes)") }
    }

    public func backlog() throws -> Backlog {
        try locked { db in
            try db.readTransaction {
                Backlog(pending: try Self.pendingCount(db), inflight: try Self.inflightCount(db),
                        dead: try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'dead'"), oldestCreatedAt: try Self.oldestUnfinished(db))
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

    public func deadLetterUnknownDestinations(known: [String], now: UnixMillis) throws -> [String: Int] {
        try locked { db in
            let unknown = try Self.allStreams(db).compactMap { $0 }.filter { !known.contains($0) }
            var result: [String: Int] = [:]
            for name in unknown {
                // Cheap when nothing is new: the stream's fresh rows are after its cursor.
                let fresh = try db.statement(Self.freshIDs)
                try fresh.bind(1, name).bind(2, try Self.cursor(db, name)).bind(3, 1)
                guard try fresh.step() else { continue }
                db.resetStatements()
                result[name] = try db.writeTransaction {
                    let cursor = try Self.cursor(db, name)
                    let dead = try db.statement("""
                        INSERT INTO row_state (id, state, attempts, finished_at, last_error)
                        SELECT id, 'dead', 0, ?3, ?4 FROM outbox
                        WHERE destination = ?1 AND id > ?2 AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = outbox.id)
                        """)
                    try dead.bind(1, name).bind(2, cursor).bind(3, now).bind(4, String(Route.unknownReason(name, known: known).prefix(1_000)))
                    try dead.run()
                    let rows = db.changes
                    // Every row of the stream up to here has a state of its own now.
                    let last = try Self.scalar(db, "SELECT coalesce(max(id), 0) FROM outbox WHERE destination = ?1") { try $0.bind(1, name) }
                    try Self.advance(db, name, to: Int64(last))
                    return rows
                }
            }
            return result
        }
    }

    public func destinationBacklogs() throws -> [DestinationBacklog] {
        try locked { db in
            try db.readTransaction {
                var byName: [String?: DestinationBacklog] = [:]
                for (stream, rows) in try Self.freshCount(db) where rows > 0 {
                    byName[stream, default: DestinationBacklog(destination: stream)].pending += rows
                }
                let stated = try db.statement("""
                    SELECT o.destination, sum(r.state = 'pending'), sum(r.state = 'inflight'), sum(r.state = 'dead') FROM (
                        SELECT id, state FROM row_state WHERE state = 'pending'
                        UNION ALL SELECT id, state FROM row_state WHERE state = 'inflight'
                        UNION ALL SELECT id, state FROM row_state WHERE state = 'dead') r
                    JOIN outbox o ON o.id = r.id
                    GROUP BY o.destination
                    """)
                while try stated.step() {
                    let name = stated.optionalString(0)
                    var b = byName[name] ?? DestinationBacklog(destination: name)
                    b.pending += stated.int(1)
                    b.inflight += stated.int(2)
                    b.dead += stated.int(3)
                    byName[name] = b
                }
                let open = try db.statement("SELECT stream, sum(rows - settled) FROM batches WHERE finished_at IS NULL GROUP BY stream")
                while try open.step() {
                    let name = open.optionalString(0)
                    byName[name, default: DestinationBacklog(destination: name)].inflight += open.int(1)
                }
                return byName.values.filter { $0.pending + $0.inflight + $0.dead > 0 }
                    .sorted { ($0.destination == nil ? 0 : 1, $0.destination ?? "") < ($1.destination == nil ? 0 : 1, $1.destination ?? "") }
            }
        }
    }

    // MARK: - Operators

    public func redrive(_ selection: DeadSelection, now: UnixMillis) throws -> Int {
        try locked { db in
            try db.writeTransaction {
                let (condition, bind) = deadCondition(selection)
                let redrive = try db.statement("""
                    UPDATE row_state
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
                // Rows with a state of their own.
                let stated = try db.statement("""
                    DELETE FROM row_state
                    WHERE id IN (SELECT id FROM row_state WHERE state IN ('delivered', 'skipped') AND finished_at < ?1 LIMIT ?2)
                    RETURNING state = 'delivered', id
                    """)
                try stated.bind(1, finishedBefore).bind(2, limit)
                var delivered = 0, skipped = 0
                var ids: [Int64] = []
                while try stated.step() {
                    if stated.int(0) == 1 { delivered += 1 } else { skipped += 1 }
                    ids.append(stated.int64(1))
                }
                stated.reset()
                // Batches: their rows without a state of their own were delivered with them.
                let old = try db.statement("""
                    SELECT id, stream, first_id, last_id FROM batches WHERE finished_at IS NOT NULL AND finished_at < ?1
                    ORDER BY finished_at LIMIT ?2
                    """)
                try old.bind(1, finishedBefore).bind(2, 64)
                var batches: [(Int64, String?, Int64, Int64)] = []
                while try old.step() { batches.append((old.int64(0), old.optionalString(1), old.int64(2), old.int64(3))) }
                let rows = try db.statement("""
                    DELETE FROM outbox WHERE id IN (
                        SELECT id FROM outbox WHERE destination IS ?1 AND id BETWEEN ?2 AND ?3
                        AND NOT EXISTS (SELECT 1 FROM row_state r WHERE r.id = outbox.id)
                        ORDER BY id LIMIT ?4)
                    RETURNING id
                    """)
                let drop = try db.statement("DELETE FROM batches WHERE id = ?1")
                let shrink = try db.statement("UPDATE batches SET first_id = ?2 WHERE id = ?1")
                var purged = ids.count
                for (batch, stream, low, high) in batches where purged < limit {
                    let room = limit - purged
                    rows.reset()
                    try rows.bind(1, stream).bind(2, low).bind(3, high).bind(4, room)
                    var deleted: [Int64] = []
                    while try rows.step() { deleted.append(rows.int64(0)) }
                    ids += deleted
                    delivered += deleted.count
                    purged += deleted.count
                    // A batch whose rows are all gone goes too; one cut short by the limit keeps the rest.
                    if deleted.count < room || (deleted.max() ?? high) >= high {
                        drop.reset()
                        try drop.bind(1, batch)
                        try drop.run()
                    } else {
                        shrink.reset()
                        try shrink.bind(1, batch).bind(2, deleted.max()! + 1)
                        try shrink.run()
                    }
                }
                // Every purged row: the outbox rows of the row_state ones, and all their kept events.
                if !ids.isEmpty {
                    for sql in ["DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))",
                                "DELETE FROM sent_events WHERE id IN (SELECT value FROM json_each(?1))"] {
                        let delete = try db.statement(sql)
                        try delete.bind(1, jsonArray(ids))
                        try delete.run()
                    }
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
                    DELETE FROM row_state
                    WHERE id IN (SELECT id FROM row_state WHERE state = 'dead' AND \(condition) LIMIT ?1)
                    RETURNING id
                    """)
                try purge.bind(1, limit)
                try bind(purge)
                var ids: [Int64] = []
                while try purge.step() { ids.append(purge.int64(0)) }
                purge.reset()
                let rows = try db.statement("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))")
                try rows.bind(1, jsonArray(ids))
                try rows.run()
                return ids.count
            }
        }
    }

    /// The SQL condition on row_state for a selection of dead rows; its parameter is `?9`.
    private func deadCondition(_ selection: DeadSelection) -> (String, (SQLiteStatement) throws -> Void) {
        switch selection {
        case .all:
            return ("1", { _ in })
        case .ids(let ids):
            return ("id IN (SELECT value FROM json_each(?9))", { try $0.bind(9, jsonArray(ids)) })
        case .eventIDs(let eventIDs):
            return ("id IN (SELECT id FROM outbox WHERE event_id IN (SELECT value FROM json_each(?9)))", { try $0.bind(9, jsonStringArray(eventIDs)) })
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
                // Unfinished and dead rows from the cursors, batches and row_state indexes;
                // finished ones, which can be millions, from the maintained counts. No table scan.
                stats.counts = [.pending: try Self.pendingCount(db), .inflight: try Self.inflightCount(db),
                                .dead: try Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'dead'"),
                                .delivered: try Self.scalar(db, "SELECT rows FROM finished_counts WHERE state = 'delivered'"),
                                .skipped: try Self.scalar(db, "SELECT rows FROM finished_counts WHERE state = 'skipped'")]
                stats.oldestPendingCreatedAt = try Self.oldestUnfinished(db)
                // Recent errors: the latest dead rows, and pending rows waiting on a retry.
                let errors = try db.statement("""
                    SELECT r.id, o.event_id, r.state, r.last_http_status, r.last_tiktok_code, r.last_error, r.finished_at
                    FROM (SELECT * FROM (SELECT * FROM row_state WHERE state = 'dead' ORDER BY finished_at DESC LIMIT 5)
                          UNION ALL
                          SELECT * FROM (SELECT * FROM row_state WHERE state = 'pending' AND last_error IS NOT NULL
                                         ORDER BY next_attempt_at DESC LIMIT 5)) r
                    JOIN outbox o ON o.id = r.id
                    ORDER BY coalesce(r.finished_at, r.next_attempt_at) DESC
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

    private static let deadLetterColumns = """
        o.id, o.event_id, CASE WHEN json_valid(o.payload) THEN json_extract(o.payload, '$.event_name') END,
        r.attempts, r.last_http_status, r.last_tiktok_code, r.last_error, o.created_at, r.finished_at, o.payload
        """

    public func deadLetters(since: UnixMillis?, limit: Int?) throws -> [DeadLetter] {
        try locked { db in
            let list = try db.statement("""
                SELECT \(Self.deadLetterColumns)
                FROM row_state r JOIN outbox o ON o.id = r.id
                WHERE r.state = 'dead' AND r.finished_at >= ?2
                ORDER BY r.finished_at DESC, r.id DESC
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
                SELECT \(Self.deadLetterColumns)
                FROM outbox o JOIN row_state r ON r.id = o.id
                WHERE (o.event_id = ?1 OR o.id = CAST(?1 AS INTEGER)) AND r.state = 'dead'
                ORDER BY o.event_id = ?1 DESC
                LIMIT 1
                """)
            try one.bind(1, key)
            return try one.step() ? deadLetter(from: one) : nil
        }
    }

    public func row(_ key: String) throws -> OutboxRow? {
        try locked { db in
            let one = try db.statement("""
                SELECT o.id, o.event_id, o.created_at, o.payload, o.destination, s.event,
                       r.state, r.attempts, r.next_attempt_at, r.finished_at, r.lease_owner, r.lease_expires_at,
                       r.last_http_status, r.last_tiktok_code, r.last_error, r.id IS NOT NULL
                FROM outbox o LEFT JOIN row_state r ON r.id = o.id LEFT JOIN sent_events s ON s.id = o.id
                WHERE o.event_id = ?1 OR o.id = CAST(?1 AS INTEGER)
                ORDER BY o.event_id = ?1 DESC
                LIMIT 1
                """)
            try one.bind(1, key)
            guard try one.step() else { return nil }
            var row = OutboxRow(id: one.int64(0), eventID: one.string(1), state: .pending, attempts: 0, createdAt: one.int64(2), nextAttemptAt: 0,
                                finishedAt: nil, leaseOwner: nil, leaseExpiresAt: nil, httpStatus: nil, tiktokCode: nil, error: nil,
                                payload: one.string(3), sentEvent: one.optionalString(5))
            if one.int(15) == 1 {
                row.state = RowState(rawValue: one.string(6)) ?? .pending
                row.attempts = one.int(7)
                row.nextAttemptAt = one.int64(8)
                row.finishedAt = one.optionalInt64(9)
                row.leaseOwner = one.optionalString(10)
                row.leaseExpiresAt = one.optionalInt64(11)
                row.httpStatus = one.optionalInt(12)
                row.tiktokCode = one.optionalInt(13)
                row.error = one.optionalString(14)
                return row
            }
            let stream = one.optionalString(4)
            one.reset()
            // No state of its own: its batch's, if a batch claimed it.
            let batch = try db.statement("""
                SELECT finished_at, lease_owner, lease_expires_at FROM batches
                WHERE stream IS ?1 AND last_id >= ?2 AND first_id <= ?2 ORDER BY last_id LIMIT 1
                """)
            try batch.bind(1, stream).bind(2, row.id)
            if try batch.step() {
                row.attempts = 1
                row.finishedAt = batch.optionalInt64(0)
                row.state = row.finishedAt == nil ? .inflight : .delivered
                row.leaseOwner = batch.optionalString(1)
                row.leaseExpiresAt = batch.optionalInt64(2)
            } else if row.id <= (try Self.cursor(db, stream)) {
                row.state = .delivered  // its batch was purged by retention (or the row kept by hand)
            }
            return row
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

    /// Counts pending rows due by `now`: every fresh row, and the retries whose time has come.
    public func dueCount(now: UnixMillis) throws -> Int {
        try locked { db in
            try db.readTransaction {
                try Self.freshCount(db).reduce(0) { $0 + $1.rows }
                    + Self.scalar(db, "SELECT count(*) FROM row_state WHERE state = 'pending' AND next_attempt_at <= ?1") { try $0.bind(1, now) }
            }
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
