import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

/// Daemons on one PostgreSQL outbox (the server scripts/test starts), with real processes:
/// the sandbox, the daemon binary, psql and Python producers.
@Suite("PostgreSQL outbox, with real processes", .serialized)
struct PostgresDaemonTests {
    @Test("two daemons drain one outbox while one of them is SIGKILLed again and again: every event delivered, duplicates bounded per kill, nothing dead")
    func twoDaemonsOneKilled() throws {
        let rig = try Rig(sandbox: ["--delay-ms", "20"], postgres: true)
        let total = 20_000
        try rig.enqueue(Rig.events(total))
        let settings = ["--max-batch-events", "250", "--lease", "5s"]
        let steady = try rig.daemon(settings, name: "steady")
        var victim = try rig.daemon(settings, name: "victim-0")
        var kills = 0
        // Kill the victim whenever it is mid-drain, restart it at once, until the outbox is empty.
        while try rig.store.unfinishedCount() > 0, kills < 40 {
            usleep(useconds_t.random(in: 150_000...400_000))
            guard try rig.store.unfinishedCount() > 0 else { break }
            victim.signal(SIGKILL)
            _ = victim.wait(timeout: 10)
            kills += 1
            victim = try rig.daemon(settings, name: "victim-\(kills)")
        }
        #expect(try rig.waitDrained(timeout: 90), "\(steady.stderr.suffix(2_000))")
        #expect(kills >= 5, "the victim was killed mid-drain \(kills) times")
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == total && stats.count(.dead) == 0, "\(stats.counts)")
        let recorded = try rig.recorded()
        #expect(recorded.count == total, "every event_id reached the sandbox")
        let duplicates = recorded.values.reduce(0) { $0 + $1 - 1 }
        // A kill can resend at most what the victim had in flight: 4 requests of 250.
        #expect(duplicates <= kills * 4 * 250, "\(duplicates) duplicates after \(kills) kills")
        // The survivors' status: both daemons listed, with their host and pid.
        let status = try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory)
        #expect(status.status == 0)
        #expect(status.stdout.contains("pid \(steady.pid)") && status.stdout.contains("pid \(victim.pid)"), "\(status.stdout)")
        #expect(status.stdout.contains(ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? ""), "\(status.stdout)")
        for daemon in [steady, victim] {
            daemon.signal(SIGTERM)
            #expect(daemon.wait(timeout: 20) == 0)
        }
        #expect(try rig.store.daemonStatuses().isEmpty, "stopped daemons remove their status rows")
    }

    @Test("the server drops every connection mid-drain (a restart, a failover): the daemon reconnects and delivers everything, nothing dead")
    func connectionsDropped() throws {
        let rig = try Rig(sandbox: ["--delay-ms", "20"], postgres: true)
        try rig.enqueue(Rig.events(5_000))
        let daemon = try rig.daemon(["--max-batch-events", "100"])
        let database = String(rig.db.split(separator: "/").last!)
        for _ in 0..<3 {
            #expect(try waitUntil(timeout: 30) { try rig.stats().count(.delivered) > 0 })
            let ended = try TestPostgres.psql(TestPostgres.serverURI!, """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)' AND application_name LIKE 'tiktok-forwarder%'
                """)
            // The daemon's connections (workers, supervisor, listener: those not reconnecting at that instant) and the test's own.
            #expect((Int(ended) ?? 0) >= 2, "connections ended: \(ended)")
            usleep(300_000)
        }
        #expect(try rig.waitDrained(timeout: 90), "\(daemon.stderr.suffix(2_000))")
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 5_000 && stats.count(.dead) == 0, "\(stats.counts)")
        #expect(try rig.recorded().count == 5_000)
        // New rows after the drops still wake it: the listener reconnected.
        try TestPostgres.psql(rig.db, #"INSERT INTO outbox (event_id, payload) VALUES ('after', '{"event_name":"purchase","url":"https://shop.example/"}')"#)
        #expect(try waitUntil(timeout: 10) { try rig.store.row("after")?.state == .delivered })
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("an idle daemon claims a row a producer just committed well before its idle poll (LISTEN/NOTIFY)")
    func notifiedPickUp() throws {
        let rig = try Rig(postgres: true)
        // Idle polls 20 s apart: only the notification can explain a quick pick-up.
        let daemon = try rig.daemon(["--linger", "20s"])
        #expect(waitUntil(timeout: 20) { daemon.stderr.contains("NOTICE started") })
        sleep(1)  // its first polls found nothing: it is idle now
        for i in 0..<3 {
            let start = Date()
            try TestPostgres.psql(rig.db, #"INSERT INTO outbox (event_id, payload) VALUES ('n\#(i)', '{"event_name":"purchase","url":"https://shop.example/"}') ON CONFLICT (event_id) DO NOTHING"#)
            #expect(try waitUntil(timeout: 10) { try rig.store.row("n\(i)")?.state == .delivered }, "\(daemon.stderr)")
            #expect(Date().timeIntervalSince(start) < 10)
        }
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("every CLI command works on PostgreSQL: migrate, config check, enqueue, status, show, dead list/show/redrive/purge")
    func cliCommands() throws {
        let rig = try Rig(postgres: true)
        let bin = Repository.binary
        func run(_ arguments: [String], stdin: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
            try ChildProcess.run(bin, arguments, stdin: stdin.map { Data($0.utf8) }, in: rig.directory)
        }
        let migrated = try run(["migrate", "--db", rig.db])
        #expect(migrated.stdout.contains("nothing to do"), "\(migrated)")
        let events = """
            {"event_id":"c1","event_name":"purchase","url":"https://shop.example/","value":10,"currency":"EUR","user":{"email":"a@b.example"}}
            {"event_id":"c2","value":"oops"}
            {"event_id":"c3","no_name":true}
            """
        let enqueue = try run(["enqueue", "--db", rig.db, "-"], stdin: events)
        #expect(enqueue.status == 0 && enqueue.stdout.contains("inserted 3"), "\(enqueue)")
        let config = rig.directory.path + "/config.yaml"
        try """
            db: \(rig.db)
            endpoint: http://127.0.0.1:\(rig.port)
            pixel_code: PIXEL42
            access_token_file: \(rig.tokenFile)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let check = try run(["config", "check", "--config", config])
        #expect(check.status == 0 && check.stdout.contains("PostgreSQL") && check.stdout.contains("schema version"), "\(check)")
        let drained = try run(["run", "--config", config, "--until-drained"] + Rig.fastSettings)
        #expect(drained.status == 0, "\(drained.stderr)")
        #expect(!drained.stderr.contains("postgres@"), "logs show the database without its user")
        let status = try run(["status", "--db", rig.db, "--json"])
        let counts = try JSONParser.parse(status.stdout)["counts"]
        #expect(counts?["delivered"] == .number("1") && counts?["dead"] == .number("2"), "\(status.stdout)")
        #expect(try run(["show", "--db", rig.db, "c1"]).stdout.contains("delivered"))
        let list = try run(["dead", "list", "--db", rig.db])
        #expect(list.stdout.contains("c2") && list.stdout.contains("c3"), "\(list.stdout)")
        #expect(try run(["dead", "show", "--db", rig.db, "c3"]).stdout.contains("no_name"))
        #expect(try run(["dead", "redrive", "--db", rig.db, "c2"]).status == 0)
        #expect(try rig.store.row("c2")?.state == .pending)
        let purge = try run(["dead", "purge", "--db", rig.db, "c3"])
        #expect(purge.status == 0, "\(purge)")
        #expect(try rig.store.row("c3") == nil && rig.store.row("c2") != nil)
        // A database without the outbox is not created by a read-only command.
        let empty = try TestPostgres.freshDatabase()
        let refused = try run(["status", "--db", empty])
        #expect(refused.status != 0 && refused.stderr.contains("migrate"), "\(refused)")
        // A password in the URI is refused before anything connects.
        let secret = try run(["status", "--db", rig.db.replacingOccurrences(of: "postgres@", with: "postgres:hunter2@")])
        #expect(secret.status != 0 && !secret.stderr.contains("hunter2") && secret.stderr.contains("passfile"), "\(secret)")
    }

    @Test("the README's PostgreSQL producer snippets, run as written: SQL through psql and Python through psycopg, then delivered")
    func readmeSnippets() throws {
        let rig = try Rig(postgres: true)
        // The producer is a role of its own, granted what the README says and nothing more.
        try TestPostgres.psql(rig.db, """
            DO $$ BEGIN CREATE ROLE shop_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
            CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric NOT NULL);
            GRANT INSERT ON orders TO shop_app;
            GRANT USAGE ON SEQUENCE orders_id_seq TO shop_app;
            """)
        try TestPostgres.psql(rig.db, try Readme.snippet("producer-postgres-grant"))
        let producer = rig.db.replacingOccurrences(of: "postgres@", with: "shop_app@")
        #expect(throws: TestPostgres.PsqlError.self) { try TestPostgres.psql(producer, "SELECT payload FROM outbox") }
        try TestPostgres.psql(producer, try Readme.snippet("producer-postgres-sql"))
        let python = try Readme.snippet("producer-postgres-python")
        let script = rig.directory.path + "/producer.py"
        try (python + "\n\nplace_order(psycopg.connect(__import__('os').environ['DATABASE_URL']), 'ord-py-1', 'Buyer@Example.com', 42.5)\n")
            .write(toFile: script, atomically: true, encoding: .utf8)
        let ran = try ChildProcess.run("/usr/bin/python3", [script], environment: ["DATABASE_URL": producer], in: rig.directory)
        #expect(ran.status == 0, "\(ran.stderr)")
        #expect(try TestPostgres.psql(rig.db, "SELECT count(*) FROM orders") == "2", "each snippet committed its order and its event together")
        let daemon = try rig.daemon(["--until-drained"])
        #expect(daemon.wait(timeout: 60) == 0, "\(daemon.stderr)")
        let recorded = try rig.recorded()
        #expect(try recorded.count == 2 && rig.stats().count(.delivered) == 2, "\(recorded)")
        let sent = try String(contentsOfFile: rig.record, encoding: .utf8)
        #expect(!sent.contains("Example.com"), "the email left hashed")
        // The operators' queries, as the README gives them.
        let report = try TestPostgres.psql(rig.db, try Readme.snippet("operator-postgres-sql"))
        #expect(report.hasPrefix("delivered|2|"), "\(report)")
    }
}
