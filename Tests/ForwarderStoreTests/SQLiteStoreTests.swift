import CSQLite
import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

@Suite("SQLite outbox")
struct SQLiteStoreTests {
    @Test("the schema itself rejects invalid states and leases")
    func schemaChecks() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let store = try SQLiteOutboxStore(path: path)
        _ = try store.enqueue([NewEvent(eventID: "e1", payload: "{}")], now: 1)
        let db = try SQLiteConnection(path: path)
        try db.execute("INSERT INTO row_state (id, state) SELECT id, 'pending' FROM outbox")  // a row with a state of its own
        for bad in [
            "UPDATE row_state SET state = 'sent'",
            "UPDATE row_state SET state = 'inflight'",                       // in flight without a lease
            "UPDATE row_state SET lease_owner = 'x', lease_expires_at = 5",  // a lease while pending
            "UPDATE row_state SET state = 'delivered'",                      // final without finished_at
            "UPDATE row_state SET attempts = -1",
            "INSERT INTO batches (stream, first_id, last_id, rows, claimed_at) VALUES (NULL, 1, 1, 1, 0)",  // open without a lease
            "INSERT INTO batches (stream, first_id, last_id, rows, claimed_at, finished_at) VALUES (NULL, 2, 1, 1, 0, 0)",
            "INSERT INTO outbox (event_id, payload) VALUES ('', '{}')",
            "INSERT INTO outbox (event_id, payload) VALUES (NULL, '{}')",
            "INSERT INTO outbox (event_id, payload) VALUES ('e2', NULL)",
            "UPDATE row_state SET attempts = 'many'",                        // STRICT typing
        ] {
            #expect(throws: SQLiteError.self, "\(bad)") { try db.execute(bad) }
        }
    }

    @Test("migrating twice is a no-op and the level is in user_version")
    func migrateTwice() throws {
        let directory = TemporaryDirectory()
        let db = try SQLiteConnection(path: directory.path + "/outbox.sqlite")
        #expect(try Migrator.migrate(db) == Array(1...Migrator.latestVersion))
        #expect(try Migrator.migrate(db) == [])
        #expect(try db.userVersion == Migrator.latestVersion)
    }

    @Test("a database with a newer schema is refused")
    func newerSchemaRefused() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        _ = try SQLiteOutboxStore(path: path)
        try SQLiteConnection(path: path).execute("PRAGMA user_version = \(Migrator.latestVersion + 1)")
        #expect(throws: MigrationError.self) { try SQLiteOutboxStore(path: path) }
        #expect(throws: MigrationError.self) { try SQLiteOutboxStore(path: path, migrate: false) }
    }

    @Test("the embedded migrations are exactly the files in migrations/ and migrations/postgresql/")
    func embeddedMigrationsMatchFiles() throws {
        for (directory, embedded) in [("migrations", embeddedMigrations), ("migrations/postgresql", embeddedPostgresMigrations)] {
            let names = try FileManager.default.contentsOfDirectory(atPath: Repository.root + "/" + directory)
                .filter { $0.hasSuffix(".sql") }.sorted()
            #expect(names == embedded.map(\.name), "run scripts/embed-migrations")
            for migration in embedded {
                var file = try Repository.read(directory + "/" + migration.name)
                if file.hasSuffix("\n") { file.removeLast() }
                #expect(file == migration.sql, "\(directory)/\(migration.name) drifted from its embedded copy: run scripts/embed-migrations")
                #expect(Int(migration.name.prefix(4)) == migration.version)
            }
            #expect(embedded.map(\.version) == Array(1...embedded.count))
        }
    }

    @Test("4 producer processes insert while a claimer drains: every row delivered exactly once, no busy error")
    func producersAndClaimer() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let claimer = try SQLiteOutboxStore(path: path)
        let producerScript = """
            import json, sqlite3, sys
            db, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
            con = sqlite3.connect(db, timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode = WAL")
            for i in range(n):
                con.execute("INSERT INTO outbox (event_id, payload) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING",
                            (f"{prefix}-{i}", json.dumps({"event_name": "purchase", "i": i})))
            """
        let producers = try (0..<4).map { p in
            try ChildProcess("/usr/bin/env", ["python3", "-c", producerScript, path, "10000", "p\(p)"], in: directory)
        }
        var settled = 0
        var now: UnixMillis = 1_800_000_000_000
        while true {
            let producing = producers.contains { $0.process.isRunning }
            now += 1
            let rows = try claimer.claim(limit: 500, owner: "claimer", leaseUntil: now + 60_000, now: now)
            if rows.isEmpty {
                if !producing { break }
                usleep(1_000)
                continue
            }
            settled += try claimer.settle(rows.map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) },
                                          owner: "claimer", now: now)
        }
        for producer in producers {
            #expect(producer.wait() == 0, "producer failed: \(producer.stderr)")
        }
        let stats = try claimer.stats(now: now)
        #expect(settled == 40_000)
        #expect(stats.count(.delivered) == 40_000)
        #expect(stats.counts.values.reduce(0, +) == 40_000)
    }

    @Test("a settle whose transaction fails leaves the batch as it was: the same settle then delivers every row, once")
    func failedSettleRetried() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let store = try SQLiteOutboxStore(path: path)
        _ = try store.enqueue((0..<6).map { NewEvent(eventID: "e\($0)", payload: "{}") }, now: 1_000)
        let rows = try store.claim(limit: 10, owner: "a", leaseUntil: 100_000, now: 2_000)
        #expect(rows.count == 6)
        // A fault inside the settle's transaction, after its batch was looked up.
        let other = try SQLiteConnection(path: path)
        try other.execute("""
            CREATE TABLE fault (on_ INTEGER NOT NULL);
            INSERT INTO fault VALUES (1);
            CREATE TRIGGER fault_on_settle BEFORE UPDATE ON batches WHEN (SELECT on_ FROM fault) = 1
            BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
            """)
        let delivered = rows.map { Settlement.delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }
        #expect(throws: SQLiteError.self) { try store.settle(delivered, owner: "a", now: 3_000) }
        try other.execute("UPDATE fault SET on_ = 0")
        #expect(try store.settle(delivered, owner: "a", now: 4_000) == 6)
        let stats = try store.stats(now: 5_000)
        #expect(stats.count(.delivered) == 6)
        #expect(stats.count(.inflight) == 0 && stats.count(.pending) == 0)
        // Settled once: a repeat changes nothing.
        #expect(try store.settle(delivered, owner: "a", now: 6_000) == 0)
    }
}

@Suite("SQLite outbox: values an operator may write")
struct SQLiteHostileValueTests {
    @Test("attempts at Int64.max: the claim saturates instead of failing, and the row can still be settled")
    func attemptsAtMaximum() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let store = try SQLiteOutboxStore(path: path)
        _ = try store.enqueue([NewEvent(eventID: "max", payload: "{}"), NewEvent(eventID: "ok", payload: "{}")], now: 1_000)
        try SQLiteConnection(path: path).execute("INSERT INTO row_state (id, state, attempts) SELECT id, 'pending', 9223372036854775807 FROM outbox WHERE event_id = 'max'")
        let rows = try store.claim(limit: 10, owner: "a", leaseUntil: 100_000, now: 2_000)
        #expect(Set(rows.map(\.eventID)) == ["max", "ok"])
        #expect(rows.first { $0.eventID == "max" }?.attempts == Int.max)
        #expect(try store.settle(rows.map { .dead(id: $0.id, AttemptRecord(error: "x")) }, owner: "a", now: 3_000) == 2)
    }

    @Test("a new database and its -wal and -shm files are group-writable whatever the umask")
    func fileModes() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let old = umask(0o077)
        defer { umask(old) }
        let store = try SQLiteOutboxStore(path: path)
        _ = try store.enqueue([NewEvent(eventID: "a", payload: "{}")], now: 1)
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            #expect(stat(file, &info) == 0, "\(file) exists while the store is open")
            #expect(info.st_mode & 0o777 == 0o660, "\(file): \(String(info.st_mode & 0o777, radix: 8))")
        }
    }

    @Test("an event_id that is not UTF-8 is flagged, never repaired")
    func invalidUTF8EventID() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let store = try SQLiteOutboxStore(path: path)
        try SQLiteConnection(path: path).execute("INSERT INTO outbox (event_id, payload) VALUES (CAST(X'6576FF2D31' AS TEXT), '{}'), ('ok', '{}')")
        let rows = try store.claim(limit: 10, owner: "a", leaseUntil: Int64.max / 2, now: Int64.max / 4)
        #expect(rows.count == 2)
        #expect(rows.first { $0.eventID == "ok" }?.eventIDIsValidUTF8 == true)
        #expect(rows.first { $0.eventID != "ok" }?.eventIDIsValidUTF8 == false)
    }
}

@Suite("SQLite outbox: finished counts")
struct FinishedCountTests {
    @Test("finished counts stay exact through settles and purges, and a recount repairs rows deleted by hand")
    func exactCounts() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let store = try SQLiteOutboxStore(path: path)
        _ = try store.enqueue((0..<50).map { NewEvent(eventID: "e\($0)", payload: "{}") }, now: 1_000)
        let rows = try store.claim(limit: 50, owner: "a", leaseUntil: 100_000, now: 2_000)
        #expect(try store.settle(rows.prefix(40).map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }
                                 + rows.suffix(10).map { .skipped(id: $0.id, reason: "unmapped") }, owner: "a", now: 3_000) == 50)
        // A second settle of the same rows (a lost lease) changes nothing, and counts nothing.
        #expect(try store.settle(rows.prefix(40).map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }, owner: "a", now: 3_000) == 0)
        func exact() throws -> (Int, Int) {
            let c = try SQLiteConnection(path: path, readOnly: true)
            let q = try c.statement("SELECT (SELECT count(*) FROM outbox_rows WHERE state = 'delivered'), (SELECT count(*) FROM outbox_rows WHERE state = 'skipped')")
            _ = try q.step()
            return (q.int(0), q.int(1))
        }
        var stats = try store.stats(now: 4_000)
        let before = try exact()
        #expect(stats.count(.delivered) == 40 && stats.count(.skipped) == 10 && before == (40, 10))
        #expect(try store.purgeFinished(finishedBefore: 4_000, limit: 25) == 25)
        stats = try store.stats(now: 4_000)
        let (delivered, skipped) = try exact()
        #expect(stats.count(.delivered) == delivered && stats.count(.skipped) == skipped && delivered + skipped == 25)
        try SQLiteConnection(path: path).execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox_rows WHERE state = 'delivered')")  // by hand
        try store.recountFinished()
        stats = try store.stats(now: 4_000)
        let after = try exact()
        #expect(stats.count(.delivered) == 0 && stats.count(.skipped) == after.1)
    }

    @Test("migrating a database that already holds finished rows seeds the counts")
    func seededByMigration() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let db = try SQLiteConnection(path: path)
        try Migrator.migrate(db, migrations: Array(embeddedMigrations.prefix(2)))
        try db.execute("INSERT INTO outbox (event_id, payload, state, finished_at) VALUES ('a', '{}', 'delivered', 1), ('b', '{}', 'delivered', 1), ('c', '{}', 'skipped', 1), ('d', '{}', 'pending', NULL)")
        try Migrator.migrate(db)
        let stats = try SQLiteOutboxStore(path: path).stats(now: 2)
        #expect(stats.count(.delivered) == 2 && stats.count(.skipped) == 1 && stats.count(.pending) == 1)
    }
}

@Suite("SQLite outbox: upgrading an existing database")
struct UpgradeTests {
    @Test("a version-4 database with rows in every state migrates in place: states, attempts and dead letters kept, destinations claimable")
    func fromVersion4() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/outbox.sqlite"
        let old = try SQLiteConnection(path: path)
        #expect(try Migrator.migrate(old, migrations: embeddedMigrations.filter { $0.version <= 4 }) == [1, 2, 3, 4])
        try old.execute("""
            INSERT INTO outbox (event_id, payload, created_at) VALUES ('p1', '{"event_name":"purchase"}', 1000);
            INSERT INTO outbox (event_id, payload, created_at, destination) VALUES ('p2', '{"event_name":"purchase"}', 1001, 'brand-b');
            INSERT INTO outbox (event_id, payload, created_at, state, attempts, finished_at, last_error)
                VALUES ('d1', '{"event_name":"x"}', 1002, 'dead', 3, 5000, 'TikTok rejected the event: bad');
            INSERT INTO outbox (event_id, payload, created_at, state, attempts, finished_at) VALUES ('v1', '{}', 1003, 'delivered', 1, 6000);
            UPDATE finished_counts SET rows = 1 WHERE state = 'delivered';
            """)
        let store = try SQLiteOutboxStore(path: path)  // migrates
        #expect(try SQLiteConnection(path: path, readOnly: true).userVersion == Migrator.latestVersion)
        let stats = try store.stats(now: 10_000)
        #expect(stats.count(.pending) == 2 && stats.count(.dead) == 1 && stats.count(.delivered) == 1)
        #expect(try store.deadLetter("d1")?.attempts == 3)
        let view = try SQLiteConnection(path: path, readOnly: true).statement("SELECT event_id, destination FROM dead_letters")
        #expect(try view.step() && view.string(0) == "d1" && view.optionalString(1) == nil)
        let b = try store.claim(limit: 10, owner: "w", leaseUntil: 20_000, now: 10_000, suspects: true, route: Route(name: "brand-b", includingUnrouted: false))
        #expect(b.map(\.eventID) == ["p2"])
        let main = try store.claim(limit: 10, owner: "w", leaseUntil: 20_000, now: 10_000, suspects: true, route: Route(name: "default", includingUnrouted: true))
        #expect(main.map(\.eventID) == ["p1"])
    }
}
