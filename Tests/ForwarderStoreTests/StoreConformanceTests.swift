import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

/// The store contract, run against every implementation.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible {
    case sqlite, memory, postgres

    var testDescription: String { rawValue }

    /// A fresh, empty store; a SQLite one lives in `directory`, a PostgreSQL one in a new
    /// database on the server scripts/test started.
    func make(in directory: TemporaryDirectory) throws -> any OutboxStore {
        switch self {
        case .memory: return InMemoryOutboxStore()
        case .sqlite: return try SQLiteOutboxStore(path: directory.path + "/outbox.sqlite")
        case .postgres: return try PostgresOutboxStore(uri: try TestPostgres.freshDatabase())
        }
    }
}

private let t0: UnixMillis = 1_800_000_000_000

private func events(_ n: Int, prefix: String = "e") -> [NewEvent] {
    (0..<n).map { NewEvent(eventID: "\(prefix)\($0)", payload: #"{"event_name":"purchase","n":\#($0)}"#) }
}

@Suite("Outbox store contract")
struct StoreConformanceTests {
    @Test("a duplicate event_id is ignored and counted", arguments: StoreKind.allCases)
    func duplicates(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        #expect(try store.enqueue(events(3), now: t0) == EnqueueResult(inserted: 3, duplicates: 0))
        #expect(try store.enqueue(events(5), now: t0) == EnqueueResult(inserted: 2, duplicates: 3))
        #expect(try store.stats(now: t0).count(.pending) == 5)
    }

    @Test("a claim takes due rows oldest first, counts an attempt, and holds a lease", arguments: StoreKind.allCases)
    func claim(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(5), now: t0)
        let first = try store.claim(limit: 3, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        #expect(first.map(\.eventID) == ["e0", "e1", "e2"])
        #expect(first.allSatisfy { $0.attempts == 1 && $0.createdAt == t0 })
        #expect(String(decoding: first[0].payload, as: UTF8.self) == #"{"event_name":"purchase","n":0}"#)
        let second = try store.claim(limit: 10, owner: "b", leaseUntil: t0 + 30_000, now: t0)
        #expect(second.map(\.eventID) == ["e3", "e4"])
        #expect(try store.claim(limit: 10, owner: "c", leaseUntil: t0 + 30_000, now: t0).isEmpty)
        #expect(try store.stats(now: t0).count(.inflight) == 5)
    }

    @Test("settling is fenced by the lease owner", arguments: StoreKind.allCases)
    func fencing(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(1), now: t0)
        let row = try #require(try store.claim(limit: 1, owner: "a", leaseUntil: t0 + 1_000, now: t0).first)
        #expect(try store.settle([.delivered(id: row.id, AttemptRecord(httpStatus: 200, tiktokCode: 0))], owner: "b", now: t0) == 0)
        #expect(try store.stats(now: t0).count(.inflight) == 1)
        #expect(try store.settle([.delivered(id: row.id, AttemptRecord(httpStatus: 200, tiktokCode: 0))], owner: "a", now: t0) == 1)
        #expect(try store.stats(now: t0).count(.delivered) == 1)
        // Settled once: a second settle changes nothing.
        #expect(try store.settle([.dead(id: row.id, AttemptRecord(error: "late"))], owner: "a", now: t0) == 0)
        #expect(try store.stats(now: t0).count(.delivered) == 1)
    }

    @Test("retry, dead and skipped settle each row with its record", arguments: StoreKind.allCases)
    func settleKinds(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(3), now: t0)
        let rows = try store.claim(limit: 3, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        let changed = try store.settle([
            .retry(id: rows[0].id, at: t0 + 5_000, AttemptRecord(httpStatus: 500, error: "HTTP 500", mayHaveReachedTikTok: true)),
            .dead(id: rows[1].id, AttemptRecord(httpStatus: 200, tiktokCode: 40002, error: "data.0.event_id: bad")),
            .skipped(id: rows[2].id, reason: "event name 'x' has no TikTok mapping"),
        ], owner: "a", now: t0 + 100)
        #expect(changed == 3)
        let stats = try store.stats(now: t0 + 100)
        #expect(stats.count(.pending) == 1 && stats.count(.dead) == 1 && stats.count(.skipped) == 1)
        // The retry is not due before its time, and remembers its first possible delivery.
        #expect(try store.claim(limit: 10, owner: "a", leaseUntil: t0 + 60_000, now: t0 + 4_999).isEmpty)
        let again = try #require(try store.claim(limit: 10, owner: "a", leaseUntil: t0 + 60_000, now: t0 + 5_000).first)
        #expect(again.attempts == 2)
        #expect(again.firstSentAt == t0 + 100)
        let dead = try #require(try store.deadLetter("e1"))
        #expect(dead.tiktokCode == 40002 && dead.error == "data.0.event_id: bad" && dead.eventName == "purchase")
        #expect(try store.deadLetter(String(dead.id))?.eventID == "e1")
        #expect(stats.recentErrors.contains { $0.eventID == "e1" && $0.state == .dead })
    }

    @Test("a released claim keeps its attempt count", arguments: StoreKind.allCases)
    func release(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(2), now: t0)
        let rows = try store.claim(limit: 2, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        try store.settle([.retry(id: rows[0].id, at: t0, AttemptRecord(error: "timeout"))], owner: "a", now: t0)
        // Row 0 has used one attempt. Claim it again, then release it: still one attempt.
        let retried = try store.claim(limit: 1, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        #expect(retried.first?.attempts == 2)
        #expect(try store.release(ids: retried.map(\.id) + [rows[1].id], owner: "a", now: t0) == 2)
        let after = try store.claim(limit: 2, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        #expect(after.map(\.attempts) == [2, 1])
        #expect(try store.release(ids: after.map(\.id), owner: "other", now: t0) == 0)
    }

    @Test("an expired lease is reclaimed, a live one is not", arguments: StoreKind.allCases)
    func reclaim(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(2), now: t0)
        _ = try store.claim(limit: 1, owner: "crashed", leaseUntil: t0 + 1_000, now: t0)
        _ = try store.claim(limit: 1, owner: "alive", leaseUntil: t0 + 60_000, now: t0)
        #expect(try store.reclaimExpiredLeases(now: t0 + 999) == 0)
        #expect(try store.reclaimExpiredLeases(now: t0 + 1_000) == 1)
        let row = try #require(try store.claim(limit: 5, owner: "new", leaseUntil: t0 + 60_000, now: t0 + 1_000).first)
        #expect(row.eventID == "e0" && row.attempts == 2)
        // The crashed owner can no longer settle it.
        #expect(try store.settle([.delivered(id: row.id, AttemptRecord())], owner: "crashed", now: t0) == 0)
    }

    @Test("a claim for a destination takes its rows only (and, for the default, the NULL ones), oldest first", arguments: StoreKind.allCases)
    func routedClaims(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        let names: [String?] = [nil, "b", "a", nil, "b", "a", "c"]
        _ = try store.enqueue(names.enumerated().map { NewEvent(eventID: "e\($0.offset)", payload: "{}", destination: $0.element) }, now: t0)
        let main = Route(name: "a", includingUnrouted: true)
        #expect(try store.claim(limit: 3, owner: "w", leaseUntil: t0 + 1_000, now: t0, suspects: true, route: main).map(\.eventID) == ["e0", "e2", "e3"])
        #expect(try store.claim(limit: 9, owner: "w", leaseUntil: t0 + 1_000, now: t0, suspects: true, route: main).map(\.eventID) == ["e5"])
        let b = Route(name: "b", includingUnrouted: false)
        #expect(try store.claim(limit: 9, owner: "w", leaseUntil: t0 + 1_000, now: t0, suspects: true, route: b).map(\.eventID) == ["e1", "e4"])
        #expect(try store.claim(limit: 9, owner: "w", leaseUntil: t0 + 1_000, now: t0, suspects: true, route: b).isEmpty)
        #expect(try store.claim(limit: 9, owner: "w", leaseUntil: t0 + 1_000, now: t0).map(\.eventID) == ["e6"], "no route: any row")
        // Suspects stay within their destination too.
        #expect(try store.reclaimLeases(owners: ["w"], now: t0) == 7)
        let suspects = try store.claim(limit: 8, owner: "v", leaseUntil: t0 + 1_000, now: t0, suspects: true, route: b)
        #expect(suspects.map(\.eventID) == ["e1", "e4"])
        let backlogs = try store.destinationBacklogs()
        #expect(backlogs.map(\.destination) == [nil, "a", "b", "c"])
        #expect(backlogs.map(\.pending) == [2, 2, 0, 1] && backlogs.map(\.inflight) == [0, 0, 2, 0])
    }

    @Test("rows for an unconfigured destination are dead with its name; redrive brings them back", arguments: StoreKind.allCases)
    func unknownDestinations(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        let names: [String?] = [nil, "shop", "brand-x", "brand-x", "", "shop", "zz\u{1B}[31m"]
        _ = try store.enqueue(names.enumerated().map { NewEvent(eventID: "e\($0.offset)", payload: "{}", destination: $0.element) }, now: t0)
        let dead = try store.deadLetterUnknownDestinations(known: ["default", "shop"], now: t0 + 5)
        #expect(dead == ["brand-x": 2, "": 1, "zz\u{1B}[31m": 1])
        #expect(try store.deadLetterUnknownDestinations(known: ["default", "shop"], now: t0 + 6).isEmpty, "once is enough")
        let letter = try #require(try store.deadLetter("e2"))
        #expect(letter.error == "destination 'brand-x' is not configured (configured: default, shop); add it to destinations:, restart, then dead redrive these rows")
        #expect(DeadReason.of(error: letter.error) == .unknownDestination)
        #expect(try store.deadLetter("e6")?.error?.contains("\u{1B}") == false, "the name is escaped")
        #expect(try store.stats(now: t0).count(.pending) == 3)
        #expect(try store.redrive(.eventIDs(["e2", "e3"]), now: t0 + 10) == 2)
        #expect(try store.deadLetterUnknownDestinations(known: ["default", "shop", "brand-x"], now: t0 + 11).isEmpty)
        let claimed = try store.claim(limit: 9, owner: "w", leaseUntil: t0 + 1_000, now: t0 + 11, suspects: true, route: Route(name: "brand-x", includingUnrouted: false))
        #expect(claimed.map(\.eventID) == ["e2", "e3"])
    }

    @Test("redrive and purge select dead rows by id, event_id, time or all", arguments: StoreKind.allCases)
    func redriveAndPurge(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(4), now: t0)
        let rows = try store.claim(limit: 4, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        for (i, row) in rows.enumerated() {
            try store.settle([.dead(id: row.id, AttemptRecord(error: "bad \(i)"))], owner: "a", now: t0 + UnixMillis(i) * 1_000)
        }
        #expect(try store.deadLetters(limit: 10).map(\.eventID) == ["e3", "e2", "e1", "e0"])
        #expect(try store.redrive(.ids([rows[0].id]), now: t0 + 10_000) == 1)
        #expect(try store.redrive(.eventIDs(["e1"]), now: t0 + 10_000) == 1)
        #expect(try store.redrive(.deadSince(t0 + 3_000), now: t0 + 10_000) == 1)
        let redriven = try store.claim(limit: 10, owner: "a", leaseUntil: t0 + 60_000, now: t0 + 10_000)
        #expect(redriven.map(\.eventID) == ["e0", "e1", "e3"])
        #expect(redriven.allSatisfy { $0.attempts == 1 })
        #expect(try store.purgeDead(.deadBefore(t0 + 2_000), limit: 10) == 0)
        #expect(try store.purgeDead(.all, limit: 10) == 1)
        #expect(try store.stats(now: t0).count(.dead) == 0)
    }

    @Test("delivered rows past retention are purged in bounded chunks", arguments: StoreKind.allCases)
    func purgeFinished(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(5), now: t0)
        let rows = try store.claim(limit: 5, owner: "a", leaseUntil: t0 + 30_000, now: t0)
        try store.settle(rows.prefix(4).map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }, owner: "a", now: t0)
        try store.settle([.skipped(id: rows[4].id, reason: "unmapped")], owner: "a", now: t0 + 50_000)
        #expect(try store.stats(now: t0 + 1_000).count(.delivered) == 4)
        #expect(try store.purgeFinished(finishedBefore: t0 + 1, limit: 3) == 3)
        #expect(try store.purgeFinished(finishedBefore: t0 + 1, limit: 3) == 1)
        #expect(try store.purgeFinished(finishedBefore: t0 + 1, limit: 3) == 0)
        #expect(try store.stats(now: t0).count(.skipped) == 1)
        #expect(try store.stats(now: t0).count(.delivered) == 0, "finished counts follow the purge")
        try store.recountFinished()
        let recounted = try store.stats(now: t0)
        #expect(recounted.count(.skipped) == 1 && recounted.count(.delivered) == 0)
    }

    @Test("status's rate is the daemons' own, summed", arguments: StoreKind.allCases)
    func daemonRate(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        try store.recordDaemonStatus(DaemonStatus(owner: "d1", pid: 1, startedAt: t0, heartbeatAt: t0, deliveryRate: 1_200.5))
        try store.recordDaemonStatus(DaemonStatus(owner: "d2", pid: 2, startedAt: t0, heartbeatAt: t0, deliveryRate: 300))
        #expect(try store.stats(now: t0).deliveryRate == 1_500.5)
    }

    @Test("stats report the oldest pending row and running daemons", arguments: StoreKind.allCases)
    func statsAndDaemons(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(1, prefix: "old"), now: t0)
        _ = try store.enqueue(events(1, prefix: "new"), now: t0 + 5_000)
        try store.recordDaemonStatus(DaemonStatus(owner: "d1", pid: 42, startedAt: t0, heartbeatAt: t0))
        try store.recordDaemonStatus(DaemonStatus(owner: "d1", pid: 42, startedAt: t0, heartbeatAt: t0 + 10, pausedReason: "access token rejected"))
        var stats = try store.stats(now: t0 + 10_000)
        #expect(stats.oldestPendingCreatedAt == t0)
        #expect(stats.daemons == [DaemonStatus(owner: "d1", pid: 42, startedAt: t0, heartbeatAt: t0 + 10, pausedReason: "access token rejected")])
        try store.removeDaemonStatus(owner: "d1")
        stats = try store.stats(now: t0 + 10_000)
        #expect(stats.daemons.isEmpty)
    }

    @Test("suspects (claims that ended without a result) go first, in groups that halve with each crash; only a lone claim counts", arguments: StoreKind.allCases)
    func unsettledClaimsBisect(kind: StoreKind) throws {
        let directory = TemporaryDirectory()
        let store = try kind.make(in: directory)
        _ = try store.enqueue(events(6), now: t0)
        let crashed = try store.claim(limit: 4, owner: "a", leaseUntil: t0 + 1_000, now: t0)
        #expect(crashed.map(\.eventID) == ["e0", "e1", "e2", "e3"] && crashed.allSatisfy { $0.unsettledClaims == 0 && $0.attempts == 1 })
        #expect(try store.reclaimExpiredLeases(now: t0 + 1_000) == 4)  // the daemon died holding e0…e3
        // Not for a claimer that leaves suspects alone.
        #expect(try store.claim(limit: 4, owner: "x", leaseUntil: t0 + 60_000, now: t0 + 1_500, suspects: false).map(\.eventID) == ["e4", "e5"])
        // First crash: halves of 4 >> 1 = 2, not counted as attempts.
        var group = try store.claim(limit: 4, owner: "b", leaseUntil: t0 + 3_000, now: t0 + 2_000)
        #expect(group.map(\.eventID) == ["e0", "e1"] && group.allSatisfy { $0.unsettledClaims == 1 && $0.attempts == 1 })
        #expect(try store.settle(group.map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }, owner: "b", now: t0 + 2_000) == 2)
        group = try store.claim(limit: 4, owner: "b", leaseUntil: t0 + 3_000, now: t0 + 2_000)
        #expect(group.map(\.eventID) == ["e2", "e3"])
        #expect(try store.reclaimExpiredLeases(now: t0 + 3_000) == 2)  // it crashed again: e2 or e3 is the culprit
        // Second crash: 4 >> 2 = 1: alone, and now each claim counts.
        let alone = try store.claim(limit: 4, owner: "c", leaseUntil: t0 + 60_000, now: t0 + 3_000)
        #expect(alone.map(\.eventID) == ["e2"] && alone.first?.unsettledClaims == 2 && alone.first?.attempts == 2)
        // A result clears the mark: a retried suspect rejoins ordinary batches.
        #expect(try store.settle([.retry(id: alone[0].id, at: t0 + 3_000, AttemptRecord(httpStatus: 500, error: "HTTP 500"))], owner: "c", now: t0 + 3_000) == 1)
        let next = try store.claim(limit: 4, owner: "c", leaseUntil: t0 + 60_000, now: t0 + 3_000)
        #expect(next.map(\.eventID) == ["e3"] && next.first?.unsettledClaims == 2)
        let ordinary = try store.claim(limit: 4, owner: "c", leaseUntil: t0 + 60_000, now: t0 + 3_000)
        #expect(ordinary.map(\.eventID) == ["e2"] && ordinary.first?.unsettledClaims == 0 && ordinary.first?.attempts == 3)
        // Reclaiming a gone owner's rows counts the same way.
        #expect(try store.reclaimLeases(owners: ["c"], now: t0 + 4_000) == 2)
        #expect(try store.claim(limit: 4, owner: "d", leaseUntil: t0 + 60_000, now: t0 + 4_000).count == 1)
    }
}
