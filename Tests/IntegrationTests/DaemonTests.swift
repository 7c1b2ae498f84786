import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport
import Yams

/// A temporary outbox (a SQLite file, or a new database on the test PostgreSQL server), a real
/// sandbox process and the real daemon binary, over loopback.
final class Rig: @unchecked Sendable {
    let directory = TemporaryDirectory()
    let token: String
    /// The `--db` value: the SQLite file's path or the PostgreSQL URI.
    let db: String
    var isPostgres: Bool { db.hasPrefix("postgresql://") }
    var tokenFile: String { directory.path + "/access-token" }
    var record: String { directory.path + "/record.ndjson" }
    private(set) var sandbox: ChildProcess!
    private(set) var port = 0
    let store: any OutboxStore

    init(token: String = "tok-\(UUID().uuidString)", daemonToken: String? = nil, sandbox arguments: [String] = [], postgres: Bool = false) throws {
        self.token = token
        try (daemonToken ?? token).write(toFile: directory.path + "/access-token", atomically: true, encoding: .utf8)
        db = postgres ? try TestPostgres.freshDatabase() : directory.path + "/outbox.sqlite"
        store = try OutboxDatabase(db).open()
        try startSandbox(arguments)
    }

    func startSandbox(_ arguments: [String]) throws {
        sandbox = try ChildProcess(Repository.binary, ["sandbox", "--port", "0", "--access-token", token, "--record", record] + arguments,
                                   in: directory, name: "sandbox")
        guard waitUntil(timeout: 10, { sandbox.stdout.hasPrefix("listening on ") && sandbox.stdout.contains("\n") }) else {
            throw RigError("sandbox did not start: \(sandbox.stderr)")
        }
        port = Int(sandbox.stdout.split(separator: "\n")[0].split(separator: ":").last!)!
    }

    /// Realistic source events (email and phone in clear); ids `prefix0`, `prefix1`, …
    static func events(_ count: Int, prefix: String = "ev-", id: (Int) -> String? = { _ in nil }) -> [NewEvent] {
        (0..<count).map { i in
            let eventID = id(i) ?? "\(prefix)\(i)"
            return NewEvent(eventID: eventID, payload: """
                {"event_name":"purchase","event_id":"\(eventID)","page":{"location":{"href":"https://shop.example/checkout?ttclid=CLICK\(i)"}},\
                "user":{"email":"Buyer.\(i)@Example.com","phone":"+33 6 12 34 \(String(format: "%02d", i % 100)) 00","id":"cust-\(i)"},\
                "value":\(i % 90 + 10).5,"currency":"EUR","items":[{"id":"SKU-\(i % 7)","quantity":1,"price":10.5}]}
                """)
        }
    }

    func enqueue(_ events: [NewEvent]) throws {
        for chunk in stride(from: 0, to: events.count, by: 5_000) {
            _ = try store.enqueue(Array(events[chunk..<min(chunk + 5_000, events.count)]), now: Int64(Date().timeIntervalSince1970 * 1000))
        }
    }

    static let fastSettings = ["--linger", "10ms", "--request-timeout", "1s", "--lease", "3s", "--backoff-base", "20ms",
                               "--backoff-max", "300ms", "--probe-interval", "200ms", "--log-level", "info"]

    func daemon(_ extra: [String] = [], environment: [String: String] = [:], name: String = "daemon") throws -> ChildProcess {
        try ChildProcess(Repository.binary, ["run", "--db", db, "--endpoint", "http://127.0.0.1:\(port)", "--pixel-code", "PIXEL42",
                                             "--access-token-file", tokenFile] + Self.fastSettings + extra,
                         environment: environment, in: directory, name: name)
    }

    func stats() throws -> OutboxStats { try store.stats(now: Int64(Date().timeIntervalSince1970 * 1000)) }

    /// The URL a daemon started with `--metrics-listen` logs it serves, once it does.
    static func metricsURL(of daemon: ChildProcess, timeout: Double) -> String? {
        var url: String?
        _ = waitUntil(timeout: timeout) {
            url = daemon.stderr.split(separator: "\n").first { $0.contains("serving metrics") }.map { String($0.split(separator: "url=").last ?? "") }
            return url != nil
        }
        return url
    }

    /// How many times the sandbox recorded each event_id.
    func recorded() throws -> [String: Int] {
        guard FileManager.default.fileExists(atPath: record) else { return [:] }
        var counts: [String: Int] = [:]
        for line in try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n") {
            let id = try JSONParser.parse(String(line))["event"]?["event_id"]?.stringValue ?? "?"
            counts[id, default: 0] += 1
        }
        return counts
    }

    func sandboxStats() throws -> JSON {
        let (status, out, _) = try ChildProcess.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/_sandbox/stats"], in: directory)
        guard status == 0 else { throw RigError("stats: curl exited \(status)") }
        return try JSONParser.parse(out)
    }

    /// All rows final (nothing pending or in flight).
    func waitDrained(timeout: Double) throws -> Bool {
        try waitUntil(timeout: timeout) { try store.unfinishedCount() == 0 }
    }

    func attempts(state: String) throws -> [Int] {
        if isPostgres {
            return try TestPostgres.psql(db, "SELECT attempts FROM outbox_rows WHERE state = '\(state)'").split(separator: "\n").compactMap { Int($0) }
        }
        let connection = try SQLiteConnection(path: db, readOnly: true)
        let query = try connection.statement("SELECT attempts FROM outbox_rows WHERE state = '\(state)'")
        var result: [Int] = []
        while try query.step() { result.append(query.int(0)) }
        return result
    }
}

struct RigError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("The daemon, with real processes", .serialized)
struct DaemonTests {
    @Test("10,000 events: every event_id recorded once, all delivered, nothing dead; the token appears nowhere")
    func tenThousand() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(10_000))
        let daemon = try rig.daemon()
        let cmdline = try String(contentsOfFile: "/proc/\(daemon.pid)/cmdline", encoding: .utf8)
        #expect(try rig.waitDrained(timeout: 60))
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 10_000 && stats.count(.dead) == 0)
        let recorded = try rig.recorded()
        #expect(recorded.count == 10_000 && recorded.values.allSatisfy { $0 == 1 })
        #expect(recorded["ev-0"] == 1 && recorded["ev-9999"] == 1)
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)

        // The token: not in the daemon's command line, output, logs or database.
        #expect(!cmdline.contains(rig.token))
        #expect(!daemon.stdout.contains(rig.token) && !daemon.stderr.contains(rig.token))
        let database = try Data(contentsOf: URL(fileURLWithPath: rig.db)) + ((try? Data(contentsOf: URL(fileURLWithPath: rig.db + "-wal"))) ?? Data())
        #expect(database.range(of: Data(rig.token.utf8)) == nil)
        // Clear-text PII never left the process: the sandbox saw only hashes.
        let sent = try String(contentsOfFile: rig.record, encoding: .utf8)
        #expect(!sent.contains("Example.com") && !sent.lowercased().contains("buyer.1@example.com") && !sent.contains("+33 6"))
        #expect(daemon.stderr.contains("NOTICE started") && daemon.stderr.contains("NOTICE stopped"))
    }

    @Test("delivery workers run at delivery.worker_priority (low by default); the SQLite writer and the supervisor keep the process's; all delivered",
          arguments: [nil, "idle", "low", "normal"])
    func workerPriority(_ priority: String?) throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(2_000))
        let daemon = try rig.daemon(priority.map { ["--worker-priority", $0] } ?? [])
        #expect(waitUntil(timeout: 20) { daemon.stderr.contains("NOTICE started") })
        // name → (policy, nice), from /proc/PID/task/TID/stat (fields 41 and 19, after the "(comm)").
        var threads: [String: (policy: Int, nice: Int)] = [:]
        _ = waitUntil(timeout: 10) {
            threads = [:]
            for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/task")) ?? [] {
                guard let stat = try? String(contentsOfFile: "/proc/\(daemon.pid)/task/\(task)/stat", encoding: .utf8),
                      let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
                let name = String(stat[stat.index(after: open)..<close])
                let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")  // field 3 onwards
                threads[name] = (Int(fields[38]) ?? -1, Int(fields[16]) ?? -99)
            }
            return threads.keys.filter { $0.hasPrefix("delivery-") }.count == 4
        }
        let expected: (policy: Int, nice: Int) = switch priority ?? "low" {
        case "idle": (5, 0)  // SCHED_IDLE
        case "low": (0, 10)
        default: (0, 0)
        }
        for index in 0..<4 {
            #expect(threads["delivery-\(index)"]?.policy == expected.policy && threads["delivery-\(index)"]?.nice == expected.nice,
                    "delivery-\(index): \(String(describing: threads["delivery-\(index)"]))")
        }
        #expect(threads["sqlite-writer"]?.policy == 0 && threads["sqlite-writer"]?.nice == 0, "\(threads)")
        #expect(threads.filter { !$0.key.hasPrefix("delivery-") && $0.key != "sqlite-writer" }.allSatisfy { $0.value.policy == 0 && $0.value.nice == 0 },
                "\(threads)")
        #expect(try rig.waitDrained(timeout: 60))
        #expect(try rig.stats().count(.delivered) == 2_000)
        #expect(daemon.stderr.contains("worker_priority=\(priority ?? "low")") && !daemon.stderr.contains("could not lower"))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("under 500s, rate limits, resets and timeouts every event is delivered and nothing is dead")
    func faults() throws {
        let rig = try Rig(sandbox: ["--fail-rate", "0.2", "--rate-limit-rate", "0.1", "--reset-rate", "0.05", "--timeout-rate", "0.05", "--seed", "7"])
        try rig.enqueue(Rig.events(3_000))
        let daemon = try rig.daemon(["--max-batch-events", "100", "--max-attempts", "1000"])
        #expect(try rig.waitDrained(timeout: 90))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 3_000 && stats.count(.dead) == 0)
        #expect(Set(try rig.recorded().keys).count == 3_000)
        let faults = try rig.sandboxStats()["faults"]
        for kind in ["fail", "rate_limit", "reset", "timeout"] {
            #expect((faults?[kind]).flatMap { Normalise.integer($0) } ?? 0 > 0, "the sandbox injected \(kind)")
        }
        #expect(daemon.stderr.contains("rate limited"))
    }

    @Test("SIGKILL five times during a 20,000-event drain: every event delivered, duplicates at most one batch per kill")
    func sigkill() throws {
        let batch = 200
        let inFlight = 1  // one request in flight: a kill can repeat at most the one batch it interrupted
        let rig = try Rig(sandbox: ["--delay-ms", "50"])
        try rig.enqueue(Rig.events(20_000))
        var killedMidDrain = 0
        for kill in 0..<5 {
            let daemon = try rig.daemon(["--max-batch-events", "\(batch)", "--max-in-flight", "\(inFlight)"], name: "daemon-\(kill)")
            // A random moment once delivery is under way.
            let delivered = try rig.stats().count(.delivered)
            _ = try waitUntil(timeout: 20) { try rig.stats().count(.delivered) > delivered }
            usleep(UInt32.random(in: 0...300_000))
            if try rig.store.unfinishedCount() > 0 { killedMidDrain += 1 }
            daemon.signal(SIGKILL)
            daemon.wait()
        }
        #expect(killedMidDrain >= 4, "the kills must land during the drain")
        let last = try rig.daemon(["--max-batch-events", "\(batch)", "--max-in-flight", "\(inFlight)", "--until-drained"], name: "daemon-final")
        #expect(last.wait(timeout: 120) == 0)
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 20_000 && stats.count(.dead) == 0 && stats.count(.inflight) == 0)
        let recorded = try rig.recorded()
        #expect(recorded.count == 20_000, "every event_id recorded at least once")
        let duplicates = recorded.values.reduce(0) { $0 + $1 - 1 }
        #expect(duplicates <= 5 * batch, "duplicates: \(duplicates); a kill can repeat only the batch it interrupted")
    }

    @Test("one rejected event in each of 10 batches of 1,000: 9,990 delivered, 10 dead with TikTok's message")
    func poison() throws {
        let rig = try Rig(sandbox: ["--reject-event-id-prefix", "bad-"])
        try rig.enqueue(Rig.events(10_000, id: { $0 % 1_000 == 421 ? "bad-\($0)" : nil }))
        let daemon = try rig.daemon(["--max-in-flight", "1"])
        #expect(try rig.waitDrained(timeout: 60))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 9_990 && stats.count(.dead) == 10)
        let dead = try rig.store.deadLetters(limit: 100)
        #expect(Set(dead.map(\.eventID)) == Set((0..<10).map { "bad-\($0 * 1_000 + 421)" }))
        #expect(dead.allSatisfy { $0.tiktokCode == 40002 && ($0.error ?? "").contains("data.421.event_id") })
        let requests = try rig.sandboxStats()["requests"].flatMap { Normalise.integer($0) } ?? 0
        #expect(requests == 20, "one failed and one resent request per batch")
    }

    @Test("a wrong token pauses delivery without dead letters or attempts; fixing the file resumes without a restart")
    func tokenMismatch() throws {
        let rig = try Rig(token: "right-token-1", daemonToken: "wrong-token-1")
        try rig.enqueue(Rig.events(500))
        let daemon = try rig.daemon()
        #expect(try waitUntil(timeout: 20) { try rig.stats().daemons.first?.pausedReason != nil })
        usleep(600_000)  // a few probes
        let status = try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory)
        #expect(status.stdout.contains("PAUSED") || status.stdout.lowercased().contains("paused"), "status: \(status.stdout)")
        #expect(status.stdout.contains("40105"))
        #expect(try rig.stats().count(.dead) == 0)
        #expect(try rig.attempts(state: "pending").allSatisfy { $0 == 0 }, "no attempt consumed while paused")
        #expect(daemon.stderr.contains("delivery paused"))

        try "right-token-1\n".write(toFile: rig.tokenFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)  // it would notice the file within a second anyway; SIGHUP makes it immediate
        #expect(try rig.waitDrained(timeout: 30))
        #expect(daemon.stderr.contains("SIGHUP: reloading the access token"))
        #expect(daemon.stderr.contains("access token reloaded"))
        #expect(try rig.stats().count(.delivered) == 500)
        #expect(daemon.process.isRunning, "no restart")
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        #expect(!daemon.stderr.contains("right-token-1") && !daemon.stderr.contains("wrong-token-1"))
        #expect(daemon.stderr.contains("delivery resumed"))
    }

    @Test("SIGTERM with requests in flight: exit 0 within the budget, nothing lost, unsent rows keep their attempts; systemd hears READY, WATCHDOG, STOPPING")
    func sigterm() throws {
        let rig = try Rig(sandbox: ["--delay-ms", "800"])
        try rig.enqueue(Rig.events(8_000))
        let listener = try NotifyListener(path: rig.directory.path + "/notify.sock")
        let daemon = try rig.daemon(["--max-batch-events", "500", "--request-timeout", "3s", "--lease", "10s", "--shutdown-budget", "5s"],
                                    environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"])
        #expect(listener.waitFor("READY=1", timeout: 10))
        #expect(listener.waitFor("WATCHDOG=1", timeout: 5))
        // Requests in flight: claimed rows, and the sandbox holding a request (a row is in
        // flight from its claim, a little before its request leaves).
        #expect(try waitUntil(timeout: 10) {
            try rig.stats().count(.inflight) > 0 && (rig.sandboxStats()["requests"].flatMap { Normalise.number($0) } ?? 0) > 0
        })
        let sent = Date()
        daemon.signal(SIGTERM)
        let status = daemon.wait(timeout: 15)
        #expect(status == 0)
        #expect(Date().timeIntervalSince(sent) < 5.5, "within the 5 s budget")
        #expect(listener.waitFor("STOPPING=1", timeout: 1))
        let stats = try rig.stats()
        #expect(stats.count(.inflight) == 0 && stats.count(.dead) == 0)
        #expect(stats.count(.delivered) + stats.count(.pending) == 8_000)
        #expect(stats.count(.delivered) > 0)
        #expect(try rig.attempts(state: "pending").allSatisfy { $0 == 0 }, "unsent rows keep their attempt count")
        #expect(Set(try rig.recorded().keys).count == stats.count(.delivered))
    }

    @Test("malformed rows are dead-lettered with reasons, good rows delivered, the daemon keeps running")
    func malformed() throws {
        let rig = try Rig()
        var events = Rig.events(1_000)
        for i in 0..<30 { events.append(NewEvent(eventID: "junk-\(i)", payload: i % 3 == 0 ? "not json {" : i % 3 == 1 ? #"{"page":{}}"# : "[1,2]")) }
        events.shuffle()
        try rig.enqueue(events)
        let daemon = try rig.daemon(environment: ["JOURNAL_STREAM": "8:12345"])
        #expect(try rig.waitDrained(timeout: 30))
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 1_000 && stats.count(.dead) == 30)
        let logLines = daemon.stderr.split(separator: "\n")
        #expect(logLines.allSatisfy { $0.hasPrefix("<") }, "journald priority prefixes")
        #expect(logLines.contains { $0.hasPrefix("<4>WARNING event dead-lettered") })
        let reasons = try rig.store.deadLetters(limit: 100).map { $0.error ?? "" }
        #expect(reasons.filter { $0.contains("not JSON") }.count == 10)
        #expect(reasons.filter { $0.contains("no event_name") }.count == 10)
        #expect(reasons.filter { $0.contains("not a JSON object") }.count == 10)
        #expect(daemon.process.isRunning)
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("a second SIGTERM exits at once; the next start reclaims the interrupted rows and delivers everything")
    func secondSignal() throws {
        let rig = try Rig(sandbox: ["--delay-ms", "1500"])
        try rig.enqueue(Rig.events(2_000))
        let daemon = try rig.daemon(["--max-batch-events", "250", "--request-timeout", "4s", "--lease", "60s"])
        #expect(try waitUntil(timeout: 10) { try rig.stats().count(.inflight) > 0 })
        daemon.signal(SIGTERM)
        #expect(waitUntil(timeout: 5) { daemon.stderr.contains("stopping: finishing requests in flight") })
        let sent = Date()
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 10) == 1)
        #expect(Date().timeIntervalSince(sent) < 1, "at once, not after the requests in flight")
        #expect(try rig.stats().count(.inflight) > 0, "rows were left in flight under a 60 s lease")
        let next = try rig.daemon(["--until-drained", "--request-timeout", "4s", "--lease", "60s"], name: "daemon-2")
        #expect(next.wait(timeout: 60) == 0)
        #expect(next.stderr.contains("reclaimed rows left in flight by a stopped daemon"))
        #expect(try rig.stats().count(.delivered) == 2_000)
    }

    @Test("retention: delivered rows past it are purged; dead rows stay")
    func retention() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(300) + [NewEvent(eventID: "junk", payload: "nope")])
        let first = try rig.daemon(["--until-drained"], name: "first")
        #expect(first.wait(timeout: 60) == 0, "\(first.stderr)")
        #expect(try rig.stats().count(.delivered) == 300)
        usleep(20_000)
        let second = try rig.daemon(["--until-drained", "--retention", "10ms"], name: "second")
        #expect(second.wait(timeout: 60) == 0, "\(second.stderr)")
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 0 && stats.count(.dead) == 1)
    }

    @Test("the metrics endpoint shows the pending count falling to 0 and the delivered counter reaching what was enqueued")
    func metrics() throws {
        let rig = try Rig(sandbox: ["--delay-ms", "100"])
        try rig.enqueue(Rig.events(3_000) + [NewEvent(eventID: "junk", payload: "nope")])
        let daemon = try rig.daemon(["--metrics-listen", "127.0.0.1:0", "--max-batch-events", "200", "--max-in-flight", "2"])
        let url = try #require(Rig.metricsURL(of: daemon, timeout: 10), "\(daemon.stderr)")
        func scrape() throws -> [String: Double] {
            let result = try ChildProcess.run("/usr/bin/curl", ["-s", url], in: rig.directory)
            var values: [String: Double] = [:]
            for line in result.stdout.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
            }
            return values
        }
        var pendingSeen: [Double] = []
        #expect(try waitUntil(timeout: 60) {
            let values = try scrape()
            if let pending = values[#"tiktok_forwarder_rows{state="pending"}"#] { pendingSeen.append(pending) }
            return values[#"tiktok_forwarder_events_total{outcome="delivered",destination="default"}"#] == 3_000 && pendingSeen.last == 0
        })
        #expect((pendingSeen.max() ?? 0) > 0, "a scrape during the drain saw rows pending: \(pendingSeen)")
        let values = try scrape()
        #expect(values[#"tiktok_forwarder_events_total{outcome="dead",reason="transform",destination="default"}"#] == 1)
        #expect(values[#"tiktok_forwarder_requests_total{outcome="delivered",code="0",destination="default"}"#] ?? 0 >= 15)
        #expect(values["tiktok_forwarder_request_duration_seconds_count"] ?? 0 >= 15)
        for reason in ["access_token", "permission", "tls", "endpoint", "other"] {
            #expect(values[#"tiktok_forwarder_paused{reason="\#(reason)",destination="default"}"#] == 0, "bounded reason codes, all 0 while delivering")
        }
        #expect(values[#"tiktok_forwarder_build_info{version="\#(ForwarderVersion.string)"}"#] == 1)
        let text = try ChildProcess.run("/usr/bin/curl", ["-s", url], in: rig.directory).stdout
        for family in Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }) {
            #expect(text.contains("# HELP \(family) "), "\(family) has HELP text")
        }
        #expect(values["tiktok_forwarder_in_flight_limit"] == 2)
        #expect(values["tiktok_forwarder_requests_in_flight"] == 0)
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("start-up refuses a plain-http remote endpoint, a missing token and a missing pixel code, clearly")
    func refusals() throws {
        let rig = try Rig()
        func run(_ arguments: [String]) throws -> (Int32, String) {
            let result = try ChildProcess.run(Repository.binary, ["run", "--db", rig.db] + arguments, in: rig.directory, timeout: 20)
            return (result.status, result.stderr)
        }
        var (status, stderr) = try run(["--endpoint", "http://business-api.tiktok.com", "--pixel-code", "P", "--access-token-file", rig.tokenFile])
        #expect(status != 0 && stderr.contains("must use https"))
        (status, stderr) = try run(["--pixel-code", "P", "--access-token-file", rig.directory.path + "/nope"])
        #expect(status != 0 && stderr.contains("cannot read the access token file"))
        (status, stderr) = try run(["--access-token-file", rig.tokenFile])
        #expect(status != 0 && stderr.contains("no pixel code"))
        (status, stderr) = try run(["--pixel-code", "P", "--access-token", "abc"])
        #expect(status != 0 && stderr.contains("--access-token"))
    }
}

/// A `$NOTIFY_SOCKET` stand-in: a Unix datagram socket collecting messages on a thread.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var messages: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw RigError("bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4_096)
            while true {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 {
                    let text = String(decoding: buffer[0..<n], as: UTF8.self)
                    lock.lock(); messages.append(text); lock.unlock()
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    return
                }
            }
        }
        thread.start()
    }

    func waitFor(_ line: String, timeout: Double) -> Bool {
        waitUntil(timeout: timeout) {
            lock.lock(); defer { lock.unlock() }
            return messages.contains { $0.split(separator: "\n").contains(Substring(line)) }
        }
    }
}

/// The README's alert rules, evaluated on real scrapes of a real daemon (the small subset of
/// PromQL they use: a comparison of a selector, `max by`, `sum by (increase(…[w]))` between
/// two scrapes; `up` is Prometheus's own and not evaluated).
@Suite("README alerts on real scrapes", .serialized)
struct ReadmeAlertsFireTests {
    typealias Sample = (name: String, labels: [String: String], value: Double)

    static func parse(_ text: String) -> [Sample] {
        text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return (String(series), [:], value) }
            var labels: [String: String] = [:]
            for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { labels[String(kv[0])] = String(kv[1].dropFirst().dropLast()) }
            }
            return (String(series[..<brace]), labels, value)
        }
    }

    /// The label sets for which `expr` fires, given the scrape now and one from `window` ago.
    static func fires(_ expr: String, now: [Sample], before: [Sample]) throws -> [[String: String]]? {
        func select(_ selector: Substring, in samples: [Sample]) -> [Sample] {
            let name = selector.prefix { $0 != "{" }
            let wanted = parse("\(selector) 0").first?.labels ?? [:]
            return samples.filter { sample in sample.name == name && wanted.allSatisfy { sample.labels[$0.key] == $0.value } }
        }
        func compare(_ value: Double, _ op: Substring, _ threshold: Double) -> Bool {
            switch op { case ">": value > threshold; case "==": value == threshold; case "<": value < threshold; default: false }
        }
        if let m = expr.wholeMatch(of: /(tiktok_forwarder_[a-z_]+(?:\{[^}]*\})?) (>|==|<) ([0-9.]+)/) {
            return select(m.1, in: now).filter { compare($0.value, m.2, Double(m.3)!) }.map(\.labels)
        }
        if let m = expr.wholeMatch(of: /max by \(([\w, ]+)\) \((tiktok_forwarder_[a-z_]+)\) (>|==|<) ([0-9.]+)/) {
            let keys = m.1.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            let groups = Dictionary(grouping: select(m.2, in: now)) { sample in keys.map { sample.labels[$0] ?? "" } }
            return groups.filter { compare($0.value.map(\.value).max()!, m.3, Double(m.4)!) }
                .map { Dictionary(uniqueKeysWithValues: zip(keys, $0.key)) }
        }
        if let m = expr.wholeMatch(of: /sum by \((\w+)\) \(increase\((tiktok_forwarder_[a-z_]+(?:\{[^}]*\})?)\[\w+\]\)\) (>|==|<) ([0-9.]+)/) {
            let earlier = select(m.2, in: before)
            let increases = select(m.2, in: now).map { sample in
                (sample.labels[String(m.1)] ?? "", sample.value - (earlier.first { $0.labels == sample.labels }?.value ?? 0))
            }
            let sums = Dictionary(increases, uniquingKeysWith: +)
            return sums.filter { compare($0.value, m.3, Double(m.4)!) }.map { [String(m.1): $0.key] }
        }
        return nil  // not evaluated here (`up`)
    }

    @Test("each alert fires when its condition is real, with the label its summary names, and stops when it clears")
    func alertsFire() throws {
        let rules = try #require(try Yams.load(yaml: try Readme.snippet("alerts-yaml")) as? [String: Any])
        let alerts = try #require((rules["groups"] as? [[String: Any]])?.first?["rules"] as? [[String: Any]])
        let expr = Dictionary(uniqueKeysWithValues: alerts.map { ($0["alert"] as! String, $0["expr"] as! String) })
        let rig = try Rig()
        try rig.enqueue(Rig.events(50))
        let daemon = try rig.daemon(["--metrics-listen", "127.0.0.1:0"])
        let url = try #require(Rig.metricsURL(of: daemon, timeout: 10), "\(daemon.stderr)")
        func scrape() throws -> [Sample] { Self.parse(try ChildProcess.run("/usr/bin/curl", ["-s", url], in: rig.directory).stdout) }
        #expect(try rig.waitDrained(timeout: 30))

        // Dead letters: 15 in a row fire the dead-letter alert, by reason.
        let baseline = try scrape()
        try rig.enqueue((0..<15).map { NewEvent(eventID: "junk-\($0)", payload: "not json") })
        #expect(try waitUntil(timeout: 20) { try rig.stats().count(.dead) == 15 })
        #expect(try waitUntil(timeout: 10) { try Self.fires(expr["TikTokForwarderDeadLetters"]!, now: scrape(), before: baseline) == [["reason": "transform"]] })
        #expect(try Self.fires(expr["TikTokForwarderPaused"]!, now: scrape(), before: baseline)?.isEmpty == true)

        // A revoked token: paused (by reason), and a backlog that ages.
        #expect(try ChildProcess.run("/usr/bin/curl", ["-s", "-X", "PUT", "--data", "revoked", "http://127.0.0.1:\(rig.port)/_sandbox/access-token"], in: rig.directory).status == 0)
        try rig.enqueue(Rig.events(5, prefix: "late-"))
        try SQLiteConnection(path: rig.db).execute("UPDATE outbox SET created_at = created_at - 3600000 WHERE event_id = 'late-0'")
        #expect(try waitUntil(timeout: 20) { try Self.fires(expr["TikTokForwarderPaused"]!, now: scrape(), before: baseline) == [["destination": "default", "reason": "access_token"]] })
        #expect(try waitUntil(timeout: 20) { try Self.fires(expr["TikTokForwarderBacklogOld"]!, now: scrape(), before: baseline)?.count == 1 })

        // Fixed: the pause alert clears (every paused series back to 0) and the backlog drains.
        #expect(try ChildProcess.run("/usr/bin/curl", ["-s", "-X", "PUT", "--data", rig.token, "http://127.0.0.1:\(rig.port)/_sandbox/access-token"], in: rig.directory).status == 0)
        #expect(try rig.waitDrained(timeout: 30))
        #expect(try waitUntil(timeout: 15) {
            let now = try scrape()
            return try Self.fires(expr["TikTokForwarderPaused"]!, now: now, before: baseline)?.isEmpty == true
                && Self.fires(expr["TikTokForwarderBacklogOld"]!, now: now, before: baseline)?.isEmpty == true
        })
        #expect(try Self.fires(expr["TikTokForwarderDown"]!, now: scrape(), before: baseline) == nil, "up is Prometheus's own series")
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }
}
