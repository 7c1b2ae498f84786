import Synchronization

/// The outbox in memory: the twin of `SQLiteOutboxStore` for unit tests of the daemon's
/// logic. It runs the same conformance suite, so it behaves the same, minus durability.
public final class InMemoryOutboxStore: OutboxStore {
    fileprivate struct Row {
        var id: Int64
        var eventID: String
        var payload: String
        var createdAt: UnixMillis
        var state: RowState = .pending
        var attempts = 0
        var nextAttemptAt: UnixMillis = 0
        var leaseOwner: String?
        var leaseExpiresAt: UnixMillis?
        var firstSentAt: UnixMillis?
        var httpStatus: Int?
        var tiktokCode: Int?
        var error: String?
        var finishedAt: UnixMillis?
        var unsettledClaims = 0
        var sentEvent: String?
        var destination: String?
        /// Never claimed: such rows are taken in id order after the due rows that have a
        /// history (retries, redriven, released), as the SQLite store takes them.
        var fresh = true
    }

    fileprivate struct State {
        var rows: [Int64: Row] = [:]
        var byEventID: [String: Int64] = [:]
        var nextID: Int64 = 1
        var daemons: [String: DaemonStatus] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func enqueue(_ events: [NewEvent], now: UnixMillis) throws -> EnqueueResult {
        state.withLock { s in
            var result = EnqueueResult()
            for event in events {
                if s.byEventID[event.eventID] != nil { result.duplicates += 1; continue }
                let id = s.nextID
                s.nextID += 1
                s.rows[id] = Row(id: id, eventID: event.eventID, payload: event.payload, createdAt: now, destination: event.destination)
                s.byEventID[event.eventID] = id
                result.inserted += 1
            }
            return result
        }
    }

    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool, route: Route?) throws -> [ClaimedRow] {
        state.withLock { s in
            let order: (Row, Row) -> Bool = { ($0.nextAttemptAt, $0.id) < ($1.nextAttemptAt, $1.id) }
            let due = s.rows.values.filter { $0.state == .pending && $0.nextAttemptAt <= now && (route?.matches($0.destination) ?? true) }
            let suspect = suspects ? due.filter { $0.unsettledClaims > 0 }.min(by: order) : nil
            let picked = suspect.map { first in
                Array(due.filter { $0.unsettledClaims == first.unsettledClaims }.sorted(by: order)
                    .prefix(max(1, limit >> min(first.unsettledClaims, 30))))
            } ?? Array((due.filter { !$0.fresh && $0.unsettledClaims == 0 }.sorted(by: order)
                        + due.filter { $0.fresh }.sorted { $0.id < $1.id }).prefix(limit))
            let counted = suspect == nil || picked.count == 1  // a suspect group's claim is a bisection step, not an attempt
            return picked.map { row in
                var r = row
                r.fresh = false
                r.state = .inflight
                if counted, r.attempts < .max { r.attempts += 1 }
                r.leaseOwner = owner
                r.leaseExpiresAt = leaseUntil
                s.rows[r.id] = r
                return ClaimedRow(id: r.id, eventID: r.eventID, payload: Array(r.payload.utf8), createdAt: r.createdAt,
                                  attempts: r.attempts, firstSentAt: r.firstSentAt, unsettledClaims: r.unsettledClaims)
            }.sorted { $0.id < $1.id }
        }
    }

    public func settle(_ settlements: [Settlement], owner: String, now: UnixMillis) throws -> Int {
        state.withLock { s in
            var changed = 0
            for settlement in settlements {
                guard var row = s.rows[settlement.id], row.state == .inflight, row.leaseOwner == owner else { continue }
                row.leaseOwner = nil
                row.leaseExpiresAt = nil
                row.unsettledClaims = 0
                switch settlement {
                case .delivered(_, let record):
                    row.sentEvent = record.sentEvent
                    row.state = .delivered
                    row.finishedAt = now
                    row.httpStatus = record.httpStatus
                    row.tiktokCode = record.tiktokCode
                    row.error = nil
                case .retry(_, let at, let record):
                    row.state = .pending
                    row.nextAttemptAt = at
                    row.apply(record, now: now)
                case .dead(_, let record):
                    row.state = .dead
                    row.finishedAt = now
                    row.apply(record, now: now)
                    if row.error == nil { row.error = "dead-lettered" }
                case .skipped(_, let reason):
                    row.state = .skipped
                    row.finishedAt = now
                    row.error = boundedError(reason)
                }
                s.rows[row.id] = row
                changed += 1
            }
            return changed
        }
    }

    public func release(ids: [Int64], owner: String, now: UnixMillis) throws -> Int {
        state.withLock { s in
            var changed = 0
            for id in ids {
                guard var row = s.rows[id], row.state == .inflight, row.leaseOwner == owner else { continue }
                row.state = .pending
                row.attempts = max(row.attempts - 1, 0)
                row.nextAttemptAt = now
                row.leaseOwner = nil
                row.leaseExpiresAt = nil
                s.rows[id] = row
                changed += 1
            }
            return changed
        }
    }

    public func reclaimLeases(owners: [String], now: UnixMillis) throws -> Int {
        reclaim(now: now) { owners.contains($0.leaseOwner ?? "") }
    }

    /// Returns the in-flight rows matching `condition` to pending; their attempt stays counted.
    private func reclaim(now: UnixMillis, where condition: (Row) -> Bool) -> Int {
        state.withLock { s in
            var changed = 0
            for (id, var row) in s.rows where row.state == .inflight && condition(row) {
                row.state = .pending
                row.unsettledClaims += 1
                row.nextAttemptAt = now
                row.leaseOwner = nil
                row.leaseExpiresAt = nil
                s.rows[id] = row
                changed += 1
            }
            return changed
        }
    }

    public func unfinishedCount() throws -> Int {
        state.withLock { s in s.rows.values.filter { $0.state == .pending || $0.state == .inflight }.count }
    }

    public func dueCount(now: UnixMillis) throws -> Int {
        state.withLock { s in s.rows.values.filter { $0.state == .pending && $0.nextAttemptAt <= now }.count }
    }

    public func backlog() throws -> Backlog {
        state.withLock { s in
            var b = Backlog()
            for row in s.rows.values {
                switch row.state {
                case .pending: b.pending += 1
                case .inflight: b.inflight += 1
                case .dead: b.dead += 1
                default: continue
                }
                if row.state != .dead { b.oldestCreatedAt = min(b.oldestCreatedAt ?? .max, row.createdAt) }
            }
            return b
        }
    }

    public func deadLetterUnknownDestinations(known: [String], now: UnixMillis) throws -> [String: Int] {
        state.withLock { s in
            var result: [String: Int] = [:]
            for (id, var row) in s.rows where row.state == .pending {
                guard let name = row.destination, !known.contains(name) else { continue }
                row.state = .dead
                row.finishedAt = now
                row.unsettledClaims = 0
                row.error = boundedError(Route.unknownReason(name, known: known))
                s.rows[id] = row
                result[name, default: 0] += 1
            }
            return result
        }
    }

    public func destinationBacklogs() throws -> [DestinationBacklog] {
        state.withLock { s in
            var byName: [String?: DestinationBacklog] = [:]
            for row in s.rows.values where [.pending, .inflight, .dead].contains(row.state) {
                var b = byName[row.destination] ?? DestinationBacklog(destination: row.destination)
                switch row.state {
                case .pending: b.pending += 1
                case .inflight: b.inflight += 1
                default: b.dead += 1
                }
                byName[row.destination] = b
            }
            return byName.values.sorted { ($0.destination == nil ? 0 : 1, $0.destination ?? "") < ($1.destination == nil ? 0 : 1, $1.destination ?? "") }
        }
    }

    public func daemonStatuses() throws -> [DaemonStatus] {
        state.withLock { s in s.daemons.values.sorted { $0.startedAt < $1.startedAt } }
    }

    public func reclaimExpiredLeases(now: UnixMillis) throws -> Int {
        reclaim(now: now) { ($0.leaseExpiresAt ?? .max) <= now }
    }

    public func redrive(_ selection: DeadSelection, now: UnixMillis) throws -> Int {
        state.withLock { s in
            var changed = 0
            for (id, var row) in s.rows where row.state == .dead && selection.matches(id: row.id, eventID: row.eventID, finishedAt: row.finishedAt ?? 0) {
                row.state = .pending
                row.attempts = 0
                row.unsettledClaims = 0
                row.nextAttemptAt = now
                row.finishedAt = nil
                row.firstSentAt = nil
                s.rows[id] = row
                changed += 1
            }
            return changed
        }
    }

    public func purgeFinished(finishedBefore: UnixMillis, limit: Int) throws -> Int {
        state.withLock { s in
            let ids = s.rows.values.filter { ($0.state == .delivered || $0.state == .skipped) && ($0.finishedAt ?? .max) < finishedBefore }
                .map(\.id).sorted().prefix(limit)
            for id in ids { s.remove(id) }
            return ids.count
        }
    }

    public func purgeDead(_ selection: DeadSelection, limit: Int) throws -> Int {
        state.withLock { s in
            let ids = s.rows.values.filter { $0.state == .dead && selection.matches(id: $0.id, eventID: $0.eventID, finishedAt: $0.finishedAt ?? 0) }
                .map(\.id).sorted().prefix(limit)
            for id in ids { s.remove(id) }
            return ids.count
        }
    }

    public func recountFinished() throws {}  // counted directly

    public func stats(now: UnixMillis) throws -> OutboxStats {
        state.withLock { s in
            var stats = OutboxStats()
            for row in s.rows.values {
                stats.counts[row.state, default: 0] += 1
                if row.state == .pending || row.state == .inflight {
                    stats.oldestPendingCreatedAt = min(stats.oldestPendingCreatedAt ?? .max, row.createdAt)
                }
            }
            stats.recentErrors = s.rows.values
                .filter { ($0.state == .dead || ($0.state == .pending && $0.error != nil)) }
                .sorted { ($0.finishedAt ?? $0.nextAttemptAt) > ($1.finishedAt ?? $1.nextAttemptAt) }
                .prefix(5)
                .map { RecentError(id: $0.id, eventID: $0.eventID, state: $0.state, httpStatus: $0.httpStatus,
                                   tiktokCode: $0.tiktokCode, error: $0.error ?? "", at: $0.finishedAt) }
            stats.daemons = s.daemons.values.sorted { $0.startedAt < $1.startedAt }
            stats.deliveryRate = stats.daemons.reduce(0) { $0 + ($1.deliveryRate ?? 0) }
            return stats
        }
    }

    public func deadLetters(since: UnixMillis?, limit: Int?) throws -> [DeadLetter] {
        state.withLock { s in
            s.rows.values.filter { $0.state == .dead && ($0.finishedAt ?? 0) >= (since ?? .min) }
                .sorted { ($0.finishedAt ?? 0, $0.id) > ($1.finishedAt ?? 0, $1.id) }
                .prefix(limit ?? .max).map(Self.deadLetter)
        }
    }

    public func row(_ key: String) throws -> OutboxRow? {
        state.withLock { s in
            guard let id = s.byEventID[key] ?? Int64(key), let r = s.rows[id] else { return nil }
            return OutboxRow(id: r.id, eventID: r.eventID, state: r.state, attempts: r.attempts, createdAt: r.createdAt,
                             nextAttemptAt: r.nextAttemptAt, finishedAt: r.finishedAt, leaseOwner: r.leaseOwner,
                             leaseExpiresAt: r.leaseExpiresAt, httpStatus: r.httpStatus, tiktokCode: r.tiktokCode,
                             error: r.error, payload: r.payload, sentEvent: r.sentEvent)
        }
    }

    public func deadLetter(_ key: String) throws -> DeadLetter? {
        state.withLock { s in
            let id = s.byEventID[key] ?? Int64(key)
            guard let id, let row = s.rows[id], row.state == .dead else { return nil }
            return Self.deadLetter(row)
        }
    }

    private static func deadLetter(_ row: Row) -> DeadLetter {
        var name: String?
        if let json = try? JSONParser.parse(row.payload) { name = json["event_name"]?.stringValue }
        return DeadLetter(id: row.id, eventID: row.eventID, eventName: name, attempts: row.attempts,
                          httpStatus: row.httpStatus, tiktokCode: row.tiktokCode, error: row.error,
                          createdAt: row.createdAt, deadSince: row.finishedAt ?? 0, payload: row.payload)
    }

    public func recordDaemonStatus(_ status: DaemonStatus) throws {
        state.withLock { s in
            var merged = status
            if let existing = s.daemons[status.owner] {
                merged.pid = existing.pid
                merged.startedAt = existing.startedAt
            }
            s.daemons[status.owner] = merged
        }
    }

    public func removeDaemonStatus(owner: String) throws {
        _ = state.withLock { s in s.daemons.removeValue(forKey: owner) }
    }
}

extension InMemoryOutboxStore.Row {
    fileprivate mutating func apply(_ record: AttemptRecord, now: UnixMillis) {
        httpStatus = record.httpStatus
        tiktokCode = record.tiktokCode
        error = record.error.map { boundedError($0) }
        if record.mayHaveReachedTikTok, firstSentAt == nil { firstSentAt = now }
    }
}

extension InMemoryOutboxStore.State {
    fileprivate mutating func remove(_ id: Int64) {
        if let row = rows.removeValue(forKey: id) { byEventID.removeValue(forKey: row.eventID) }
    }
}

extension DeadSelection {
    func matches(id: Int64, eventID: String, finishedAt: UnixMillis) -> Bool {
        switch self {
        case .all: return true
        case .ids(let ids): return ids.contains(id)
        case .eventIDs(let eventIDs): return eventIDs.contains(eventID)
        case .deadSince(let time): return finishedAt >= time
        case .deadBefore(let time): return finishedAt < time
        }
    }
}
