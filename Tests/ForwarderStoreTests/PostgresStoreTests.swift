import ForwarderCore
import ForwarderStore
import Foundation
import Synchronization
import Testing
import TestSupport

/// What the PostgreSQL store adds to the contract: several claimers on several connections,
/// migrations under an advisory lock, the producers' trigger and notification, its URI rules.
/// Against the real server scripts/test starts.
@Suite("PostgreSQL outbox")
struct PostgresStoreTests {
    private func now() -> UnixMillis { UnixMillis(Date().timeIntervalSince1970 * 1000) }

    @Test("8 claimers on 8 connections while 2 producers insert: every row claimed once, delivered once, none left")
    func concurrentClaimers() throws {
        let uri = try TestPostgres.freshDatabase()
        _ = try PostgresOutboxStore(uri: uri)
        let total = 6_000
        let claimed = Mutex<[Int64: Int]>([:])
        let failures = Mutex<[String]>([])
        let producersDone = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 10) { worker in
            do {
                let store = try PostgresOutboxStore(uri: uri, migrate: false)
                if worker < 2 {
                    // Producers: one INSERT per statement, as their services would.
                    for i in stride(from: worker, to: total, by: 2) {
                        _ = try store.enqueue([NewEvent(eventID: "e\(i)", payload: #"{"event_name":"purchase","n":\#(i)}"#)], now: now())
                    }
                    producersDone.add(1, ordering: .relaxed)
                    return
                }
                var idle = 0
                while idle < 20 {
                    let rows = try store.claim(limit: 100, owner: "w\(worker)", leaseUntil: now() + 60_000, now: now())
                    if rows.isEmpty {
                        if producersDone.load(ordering: .relaxed) == 2 { idle += 1 }
                        usleep(5_000)
                        continue
                    }
                    claimed.withLock { for row in rows { $0[row.id, default: 0] += 1 } }
                    let settled = try store.settle(rows.map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }, owner: "w\(worker)", now: now())
                    if settled != rows.count { failures.withLock { $0.append("settled \(settled) of \(rows.count)") } }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        let counts = claimed.withLock { $0 }
        #expect(counts.count == total && counts.values.allSatisfy { $0 == 1 })
        let store = try PostgresOutboxStore(uri: uri)
        let stats = try store.stats(now: now())
        #expect(stats.count(.delivered) == total && stats.count(.pending) == 0 && stats.count(.inflight) == 0)
    }

    @Test("6 daemons starting at once migrate the database once (advisory lock), and all open it")
    func concurrentMigrations() throws {
        let uri = try TestPostgres.freshDatabase()
        let errors = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            do { _ = try PostgresOutboxStore(uri: uri) } catch { errors.withLock { $0.append("\(error)") } }
        }
        #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
        let versions = try TestPostgres.psql(uri, "SELECT version || ':' || name FROM tiktok_forwarder_schema ORDER BY version")
        #expect(versions == embeddedPostgresMigrations.map { "\($0.version):\($0.name)" }.joined(separator: "\n"))
        // A newer schema than the binary knows is refused, like SQLite's.
        try TestPostgres.psql(uri, "INSERT INTO tiktok_forwarder_schema (version, name) VALUES (999, 'future')")
        #expect(throws: MigrationError.self) { try PostgresOutboxStore(uri: uri) }
    }

    @Test("the producers' INSERT: ON CONFLICT ignores a duplicate, the trigger gives the row its state, and a listener hears the commit")
    func producerContract() throws {
        let uri = try TestPostgres.freshDatabase()
        let store = try PostgresOutboxStore(uri: uri)
        let listener = try PostgresConnection(uri: uri)
        try listener.execute("LISTEN tiktok_forwarder_outbox")
        try TestPostgres.psql(uri, """
            BEGIN;
            INSERT INTO outbox (event_id, payload) VALUES ('p1', '{"event_name":"purchase"}') ON CONFLICT (event_id) DO NOTHING;
            INSERT INTO outbox (event_id, payload) VALUES ('p1', '{"event_name":"other"}') ON CONFLICT (event_id) DO NOTHING;
            INSERT INTO outbox (event_id, payload, destination) VALUES ('p2', 'not json', 'app') ON CONFLICT (event_id) DO NOTHING;
            COMMIT;
            """)
        var heard: [String] = []
        _ = waitUntil(timeout: 5) {
            heard += (try? listener.notifications()) ?? []
            return !heard.isEmpty
        }
        #expect(heard.first == "tiktok_forwarder_outbox")
        #expect(try TestPostgres.psql(uri, "SELECT event_id || ' ' || state || ' ' || coalesce(destination, '-') || ' [' || stream || ']' FROM outbox JOIN row_state r USING (id) ORDER BY id")
                == "p1 pending - []\np2 pending app [=app]")
        #expect(try store.row("p1")?.payload == #"{"event_name":"purchase"}"#, "the first insert won")
        // A producer's rolled-back transaction leaves nothing: no row, no state.
        try TestPostgres.psql(uri, "BEGIN; INSERT INTO outbox (event_id, payload) VALUES ('gone', '{}'); ROLLBACK;")
        #expect(try store.row("gone") == nil && store.stats(now: now()).count(.pending) == 2)
        // The operators' views read the same states.
        #expect(try TestPostgres.psql(uri, "SELECT state || ' ' || rows FROM outbox_summary") == "pending 2")
    }

    @Test("a connection URI with a password is refused without repeating it; a foreign outbox table is not taken over")
    func uriAndSchemaRules() throws {
        let server = try #require(TestPostgres.serverURI, "\(TestPostgres.Unavailable())")
        let withPassword = server.replacingOccurrences(of: "postgres@", with: "postgres:s3cret-pw@")
        #expect(throws: PostgresError.self) { try PostgresOutboxStore(uri: withPassword) }
        do { _ = try PostgresOutboxStore(uri: withPassword) } catch {
            #expect(!"\(error)".contains("s3cret-pw") && "\(error)".contains("passfile"), "\(error)")
        }
        let query = server + "?password=s3cret-pw"
        #expect(throws: PostgresError.self) { try PostgresConnection(uri: query) }
        #expect(PostgresURI.display(server + "?sslmode=disable") == PostgresURI.display(server) && !PostgresURI.display(server).contains("postgres@"))

        let uri = try TestPostgres.freshDatabase()
        try TestPostgres.psql(uri, "CREATE TABLE outbox (id serial PRIMARY KEY, body text)")
        do {
            _ = try PostgresOutboxStore(uri: uri)
            Issue.record("a foreign outbox table was taken over")
        } catch {
            #expect("\(error)".contains("search_path"), "\(error)")
        }
        // Its own schema, through the URI's options: the same database works.
        try TestPostgres.psql(uri, "CREATE SCHEMA tiktok_forwarder")
        let scoped = uri + "?options=-csearch_path%3Dtiktok_forwarder"
        let store = try PostgresOutboxStore(uri: scoped)
        _ = try store.enqueue([NewEvent(eventID: "s1", payload: "{}")], now: now())
        #expect(try TestPostgres.psql(uri, "SELECT count(*) FROM tiktok_forwarder.outbox") == "1")
        #expect(try TestPostgres.psql(uri, "SELECT count(*) FROM public.outbox") == "0")
    }

    @Test("recount corrects the finished counts after rows were deleted by hand; retention deletes in bounded chunks")
    func recountAndRetention() throws {
        let uri = try TestPostgres.freshDatabase()
        let store = try PostgresOutboxStore(uri: uri)
        _ = try store.enqueue((0..<50).map { NewEvent(eventID: "r\($0)", payload: "{}") }, now: 1_000)
        let rows = try store.claim(limit: 50, owner: "a", leaseUntil: 90_000, now: 2_000)
        _ = try store.settle(rows.prefix(40).map { .delivered(id: $0.id, AttemptRecord()) } + rows.suffix(10).map { .skipped(id: $0.id, reason: "unmapped") },
                         owner: "a", now: 3_000)
        try TestPostgres.psql(uri, "DELETE FROM outbox WHERE id IN (SELECT id FROM row_state WHERE state = 'delivered' LIMIT 15)")
        #expect(try store.stats(now: 4_000).count(.delivered) == 40, "maintained, not counted")
        try store.recountFinished()
        var stats = try store.stats(now: 4_000)
        #expect(stats.count(.delivered) == 25 && stats.count(.skipped) == 10)
        #expect(try store.purgeFinished(finishedBefore: 5_000, limit: 20) == 20)
        #expect(try store.purgeFinished(finishedBefore: 5_000, limit: 20) == 15)
        stats = try store.stats(now: 6_000)
        #expect(stats.count(.delivered) == 0 && stats.count(.skipped) == 0)
        #expect(try TestPostgres.psql(uri, "SELECT count(*) FROM outbox") == "0")
    }

    @Test("the server ends the session (a restart, a failover): the next operation reconnects and succeeds; a transaction cut short runs again, whole, once")
    func reconnects() throws {
        let uri = try TestPostgres.freshDatabase()
        let store = try PostgresOutboxStore(uri: uri)
        _ = try store.enqueue([NewEvent(eventID: "k1", payload: "{}")], now: 1)
        let database = String(uri.split(separator: "/").last!)
        let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)' AND pid <> pg_backend_pid()"
        try TestPostgres.psql(TestPostgres.serverURI!, terminate)
        #expect(try store.unfinishedCount() == 1)
        #expect(try store.enqueue([NewEvent(eventID: "k2", payload: "{}")], now: 2).inserted == 1)
        // A transaction cut short runs again, whole, on a new connection (once).
        let connection = try PostgresConnection(uri: uri)
        var runs = 0
        let value = try connection.transaction {
            runs += 1
            try connection.query("INSERT INTO daemon_status (owner, pid, started_at, heartbeat_at) VALUES ('t', 1, 1, \(runs))")
            if runs == 1 { try TestPostgres.psql(TestPostgres.serverURI!, terminate) }
            return try connection.query("SELECT heartbeat_at FROM daemon_status WHERE owner = 't'").string(0, 0)
        }
        #expect(runs == 2 && value == "2", "the first run's insert was rolled back with its connection")
        // A second break inside the repeat is an error for the caller.
        #expect(throws: PostgresError.self) {
            try connection.transaction {
                try connection.query("SELECT 1")
                try TestPostgres.psql(TestPostgres.serverURI!, terminate)
                try connection.query("SELECT 2")
            }
        }
        #expect(try connection.query("SELECT 3").string(0, 0) == "3")
    }
}
