import ForwarderCore
import ForwarderStore
import ForwarderTransport
import Foundation
import Testing
import TestSupport

/// A misbehaving peer (`Tests/Fixtures/hostile-peer.py`) on a loopback port.
final class HostilePeer: @unchecked Sendable {
    let process: ChildProcess
    let port: Int

    init(_ mode: String, tls: (cert: String, key: String)? = nil, in directory: TemporaryDirectory) throws {
        var arguments = [Repository.root + "/Tests/Fixtures/hostile-peer.py", mode]
        if let tls { arguments += ["--tls", tls.cert, tls.key] }
        let child = try ChildProcess("/usr/bin/python3", arguments, in: directory, name: "peer-\(mode)")
        process = child
        guard waitUntil(timeout: 30, { child.stdout.contains("\n") }), let line = child.stdout.split(separator: "\n").first,
              let port = Int(line.split(separator: " ").last ?? "") else {
            throw RigError("hostile peer did not start: \(child.stderr)")
        }
        self.port = port
    }
}

@Suite("Hostile input, with real processes", .serialized)
struct HostileInputDaemonTests {
    /// A row whose processing crashes the daemon every time (debug builds' crash hook): the
    /// daemon is restarted as systemd would, and the row ends dead after max_attempts claims
    /// while every other row — those of its batch included — is delivered.
    @Test("a row that crashes the daemon every time ends dead after max_attempts restarts; every other row is delivered")
    func crashLoopingRow() throws {
        let rig = try Rig()
        var events = Rig.events(600)
        events.insert(NewEvent(eventID: "poison", payload: events[0].payload.replacingOccurrences(of: "ev-0", with: "poison")), at: 250)
        // The timestamp that once crashed the normaliser rides along: it must simply fall back.
        events.append(NewEvent(eventID: "huge-time", payload: #"{"event_name":"purchase","url":"https://s.example/","context":{"event_timestamp":"1000000000000000000000000"}}"#))
        try rig.enqueue(events)
        var crashes = 0
        var finished = false
        for run in 0..<16 {
            let daemon = try rig.daemon(["--max-attempts", "3", "--max-batch-events", "100", "--until-drained"],
                                        environment: ["TIKTOK_FORWARDER_TEST_CRASH_EVENT_ID": "poison"], name: "daemon-\(run)")
            let status = daemon.wait(timeout: 60)
            if status == 0 { finished = true; break }
            #expect(daemon.stderr.contains("test hook: crashing on event poison"), "run \(run) exited \(status): \(daemon.stderr.suffix(2_000))")
            crashes += 1
        }
        #expect(finished, "the queue drained after \(crashes) crashes")
        // Batches of 100: the crashes bisect the poison's group (100 → 50 → … → 1: 7 steps, no
        // attempt consumed), then it crashes alone once per allowed attempt.
        #expect(crashes >= 3 && crashes <= 3 + 7, "\(crashes) crashes")
        let stats = try rig.stats()
        let deadNow = try rig.store.deadLetters(limit: 5).map { "\($0.eventID): \($0.error ?? "")" }
        #expect(stats.count(.delivered) == 601 && stats.count(.dead) == 1 && stats.count(.pending) == 0, "\(stats.counts); dead: \(deadNow)")
        let dead = try #require(try rig.store.deadLetter("poison"))
        #expect(dead.error?.contains("ended without a result") == true, "\(dead.error ?? "")")
        let recorded = try rig.recorded()
        #expect(recorded["poison"] == nil && recorded.count == 601)
    }

    @Test("operator-written extremes (created_at at Int64.min, attempts at Int64.max) crash neither status nor the daemon")
    func extremeOperatorValues() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(200) + [NewEvent(eventID: "min-created", payload: #"{"event_name":"purchase","url":"https://s.example/"}"#),
                                           NewEvent(eventID: "max-attempts", payload: #"{"event_name":"purchase","url":"https://s.example/"}"#)])
        let sql = "UPDATE outbox SET created_at = -9223372036854775808 WHERE event_id = 'min-created'; INSERT INTO row_state (id, state, attempts) SELECT id, 'pending', 9223372036854775807 FROM outbox WHERE event_id = 'max-attempts';"
        #expect(try ChildProcess.run("/usr/bin/sqlite3", [rig.db, sql], in: rig.directory).status == 0)
        for arguments in [["status"], ["status", "--json"], ["dead", "list"]] {
            let result = try ChildProcess.run(Repository.binary, arguments + ["--db", rig.db], in: rig.directory)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
        }
        let daemon = try rig.daemon(["--until-drained"])
        #expect(daemon.wait(timeout: 60) == 0, "\(daemon.stderr)")
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 200 && stats.count(.pending) == 0 && stats.count(.inflight) == 0)
        #expect(try rig.store.deadLetter("max-attempts")?.error?.contains("gave up after") == true)
        #expect(try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory).status == 0)
    }

    @Test("huge durations in configuration are refused with the key named, never trapped on", arguments: [
        ["--delivery-max-age", "99999999999999d"], ["--lease", "9223372036854775807ms"], ["--retention", "100000000000000w"],
    ])
    func hugeDurations(_ flags: [String]) throws {
        let rig = try Rig()
        let result = try ChildProcess.run(Repository.binary, ["config", "check", "--db", rig.db, "--pixel-code", "P",
                                                              "--access-token-file", rig.tokenFile] + flags, in: rig.directory)
        #expect(result.status == 1 || result.status == 2, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains(flags[0]) || result.stderr.contains(flags[0].dropFirst(2).replacingOccurrences(of: "-", with: "_")), "\(result.stderr)")
    }

    @Test("configuration errors never quote what they read: a YAML syntax error, a token given as the token file's path")
    func configErrorsQuoteNothing() throws {
        let rig = try Rig()
        let secret = "sk-live-9f8e7d6c5b4a39281706"
        let config = rig.directory.path + "/config.yaml"
        try "pixel_code: P\naccess_token: \"\(secret)\": oops\n".write(toFile: config, atomically: true, encoding: .utf8)
        let yaml = try ChildProcess.run(Repository.binary, ["config", "check", "--config", config, "--db", rig.db], in: rig.directory)
        #expect(yaml.status != 0 && yaml.stderr.contains("is not valid YAML") && yaml.stderr.contains("line 2"), "\(yaml.stderr)")
        #expect(!yaml.stderr.contains(secret) && !yaml.stdout.contains(secret))
        for command in [["config", "check"], ["run"]] {
            let asPath = try ChildProcess.run(Repository.binary, command + ["--db", rig.db, "--pixel-code", "P", "--access-token-file", secret], in: rig.directory)
            #expect(asPath.status != 0 && asPath.stderr.contains("no such file"), "\(asPath.stderr)")
            #expect(!asPath.stderr.contains(secret) && !asPath.stdout.contains(secret))
        }
    }

    @Test("a peer that echoes the request headers: the token is in no log, last_error, status or dead letter")
    func echoedToken() throws {
        let rig = try Rig()
        let peer = try HostilePeer("echo", in: rig.directory)
        try rig.enqueue(Rig.events(20))
        let daemon = try ChildProcess(Repository.binary, ["run", "--db", rig.db, "--endpoint", "http://127.0.0.1:\(peer.port)", "--pixel-code", "P",
                                                          "--access-token-file", rig.tokenFile, "--until-drained", "--max-attempts", "2"] + Rig.fastSettings,
                                      in: rig.directory, name: "daemon")
        #expect(daemon.wait(timeout: 60) == 0, "\(daemon.stderr)")
        #expect(try rig.stats().count(.dead) == 20)
        let shown = [daemon.stderr,
                     try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory).stdout,
                     try ChildProcess.run(Repository.binary, ["status", "--json", "--db", rig.db], in: rig.directory).stdout,
                     try ChildProcess.run(Repository.binary, ["dead", "list", "--db", rig.db], in: rig.directory).stdout,
                     try ChildProcess.run(Repository.binary, ["dead", "show", "ev-3", "--db", rig.db], in: rig.directory).stdout]
        #expect(shown[4].contains("upstream error"), "the premise: the peer's text is kept")
        #expect(shown[4].contains("[redacted]"))
        for text in shown { #expect(!text.contains(rig.token)) }
        let database = try Data(contentsOf: URL(fileURLWithPath: rig.db)) + ((try? Data(contentsOf: URL(fileURLWithPath: rig.db + "-wal"))) ?? Data())
        #expect(database.range(of: Data(rig.token.utf8)) == nil)
    }

    @Test("a plain-http endpoint never goes through a proxy from the environment")
    func noProxyForPlainHTTP() throws {
        let rig = try Rig()
        let proxy = try HostilePeer("count", in: rig.directory)
        try rig.enqueue(Rig.events(50))
        let proxyURL = "http://127.0.0.1:\(proxy.port)"
        let daemon = try rig.daemon(["--until-drained"], environment: ["http_proxy": proxyURL, "HTTP_PROXY": proxyURL, "ALL_PROXY": proxyURL, "all_proxy": proxyURL])
        #expect(daemon.wait(timeout: 60) == 0, "\(daemon.stderr)")
        #expect(try rig.recorded().count == 50, "delivered straight to the sandbox")
        #expect(!FileManager.default.fileExists(atPath: rig.directory.path + "/connections.log"), "the proxy saw no connection")
    }

    @Test("event ids with ESC and CR are printed escaped by the daemon's log and the CLI")
    func controlCharacters() throws {
        let rig = try Rig()
        try rig.enqueue([NewEvent(eventID: "evil\u{1B}[2J\r\u{1B}]0;pwned\u{07}", payload: "not json")] + Rig.events(5))
        let daemon = try rig.daemon(["--until-drained"])
        #expect(daemon.wait(timeout: 60) == 0)
        let outputs = [daemon.stderr,
                       try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory).stdout,
                       try ChildProcess.run(Repository.binary, ["dead", "list", "--db", rig.db], in: rig.directory).stdout]
        #expect(outputs[0].contains("\\u{1B}[2J"), "the id is shown, escaped")
        for text in outputs {
            #expect(!text.contains("\u{1B}") && !text.contains("\r") && !text.contains("\u{07}"))
        }
    }

    @Test("an event_id that is not UTF-8 is dead-lettered with the reason and never sent altered")
    func invalidUTF8EventID() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(10))
        let insert = #"INSERT INTO outbox (event_id, payload) VALUES (CAST(X'6F72642DFF2D31' AS TEXT), '{"event_name":"purchase","url":"https://s.example/"}');"#
        #expect(try ChildProcess.run("/usr/bin/sqlite3", [rig.db, insert], in: rig.directory).status == 0)
        let daemon = try rig.daemon(["--until-drained"])
        #expect(daemon.wait(timeout: 60) == 0)
        let stats = try rig.stats()
        #expect(stats.count(.delivered) == 10 && stats.count(.dead) == 1)
        #expect(try rig.store.deadLetters(limit: 5).first?.error?.contains("not valid UTF-8") == true)
        #expect(!(try String(contentsOfFile: rig.record, encoding: .utf8)).contains("\u{FFFD}"))
    }

    @Test("the database file removed and recreated under a running daemon: it exits non-zero, saying so")
    func replacedDatabase() throws {
        let rig = try Rig()
        let daemon = try rig.daemon()
        #expect(waitUntil(timeout: 10) { daemon.stderr.contains("NOTICE started") })
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: rig.db + suffix) }
        _ = try SQLiteOutboxStore(path: rig.db)
        #expect(daemon.wait(timeout: 15) == 1)
        #expect(daemon.stderr.contains("the database file was replaced while running") || daemon.stderr.contains("the database file was removed while running"),
                "\(daemon.stderr)")
    }

    @Test("a TLS certificate that does not verify pauses delivery: no attempt consumed, nothing dead, status says why")
    func tlsVerificationPauses() throws {
        let rig = try Rig()
        let cert = rig.directory.path + "/cert.pem", key = rig.directory.path + "/key.pem"
        let made = try ChildProcess.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                                                             "-days", "1", "-subj", "/CN=127.0.0.1"], in: rig.directory)
        #expect(made.status == 0, "\(made.stderr)")
        let peer = try HostilePeer("count", tls: (cert, key), in: rig.directory)
        try rig.enqueue(Rig.events(30))
        let daemon = try ChildProcess(Repository.binary, ["run", "--db", rig.db, "--endpoint", "https://127.0.0.1:\(peer.port)", "--pixel-code", "P",
                                                          "--access-token-file", rig.tokenFile] + Rig.fastSettings, in: rig.directory, name: "daemon")
        #expect(try waitUntil(timeout: 20) { try rig.stats().daemons.first?.pausedReason?.contains("TLS verification") == true })
        usleep(500_000)
        #expect(try rig.stats().count(.dead) == 0)
        #expect(try rig.attempts(state: "pending").allSatisfy { $0 == 0 }, "no attempt consumed")
        let status = try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory)
        #expect(status.stdout.contains("PAUSED") && status.stdout.contains("TLS verification"))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }

    @Test("SIGHUP and SIGTERM in the first milliseconds after start are handled, not fatal")
    func earlySignals() throws {
        let rig = try Rig()
        for _ in 0..<5 {
            let daemon = try rig.daemon()
            daemon.signal(SIGHUP)
            usleep(2_000)
            daemon.signal(SIGHUP)
            #expect(waitUntil(timeout: 10) { daemon.stderr.contains("NOTICE started") }, "\(daemon.stderr)")
            #expect(daemon.process.isRunning)
            daemon.signal(SIGTERM)
            #expect(daemon.wait(timeout: 20) == 0)
        }
        let daemon = try rig.daemon()
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0, "an early SIGTERM is a graceful stop")
    }
}

@Suite("Transport against hostile peers", .serialized)
struct HostileTransportTests {
    static func post(port: Int) throws -> Result<HTTPResponse, TransportFailure> {
        let transport = try CurlTransport(configuration: .init(url: "http://127.0.0.1:\(port)/open_api/v1.3/event/track/",
                                                               connectTimeoutMillis: 2_000, totalTimeoutMillis: 20_000))
        return transport.post(body: Array("{}".utf8), accessToken: "t0ken")
    }

    @Test("a 100 MB response is cut off at the cap and classified, not buffered")
    func hugeResponse() throws {
        let directory = TemporaryDirectory()
        let peer = try HostilePeer("big", in: directory)
        let started = Date()
        let result = try Self.post(port: peer.port)
        guard case .failure(let failure) = result else { Issue.record("expected a failure, got a response"); return }
        #expect(failure.kind == .responseTooLarge)
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("a gzip bomb is not inflated: no compressed encoding is asked for or decoded")
    func gzipBomb() throws {
        let directory = TemporaryDirectory()
        let peer = try HostilePeer("gzip", in: directory)
        let result = try Self.post(port: peer.port)
        switch result {
        case .success(let response):
            #expect(response.body.count < 1_000_000, "kept compressed: \(response.body.count) bytes")
        case .failure(let failure):
            #expect(failure.kind == .responseTooLarge || failure.kind == .other, "\(failure)")
        }
    }
}

@Suite("Operator mistakes, with real processes", .serialized)
struct OperatorMistakeTests {
    @Test("status, dead and enqueue refuse a database path that does not exist, and create nothing", arguments: [
        ["status"], ["status", "--json"], ["dead", "list"], ["dead", "redrive", "--all"], ["enqueue", "/dev/null"],
    ])
    func missingDatabase(_ command: [String]) throws {
        let directory = TemporaryDirectory()
        let typo = directory.path + "/outbx.sqlite"
        let result = try ChildProcess.run(Repository.binary, command + ["--db", typo], in: directory)
        #expect(result.status == 1, "\(command): exit \(result.status)")
        #expect(result.stderr.contains("no outbox at \(typo)"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: typo))
    }

    @Test("--until-drained exits 3 with the reason when delivery pauses: a wrong token, a doubled endpoint path")
    func untilDrainedGivesUpOnPause() throws {
        let rig = try Rig(token: "right-token-2", daemonToken: "wrong-token-2")
        try rig.enqueue(Rig.events(20))
        let wrongToken = try rig.daemon(["--until-drained"], name: "wrong-token")
        #expect(wrongToken.wait(timeout: 30) == 3)
        #expect(wrongToken.stderr.contains("--until-drained gives up") && wrongToken.stderr.contains("40105"))
        try "right-token-2".write(toFile: rig.tokenFile, atomically: true, encoding: .utf8)
        let doubled = try ChildProcess(Repository.binary, ["run", "--db", rig.db, "--endpoint", "http://127.0.0.1:\(rig.port)/open_api/v1.3/event/track/",
                                                           "--pixel-code", "P", "--access-token-file", rig.tokenFile, "--until-drained"] + Rig.fastSettings,
                                       in: rig.directory, name: "doubled")
        #expect(doubled.wait(timeout: 30) == 3)
        #expect(doubled.stderr.contains("HTTP 404") && doubled.stderr.contains("base URL only"), "\(doubled.stderr)")
        #expect(try rig.stats().count(.dead) == 0 && rig.stats().count(.pending) == 20, "nothing dead or lost")
        #expect(try rig.daemon(["--until-drained"], name: "fixed").wait(timeout: 30) == 0)
        #expect(try rig.stats().count(.delivered) == 20)
    }
}

@Suite("Configuration mistakes through the real binary")
struct ConfigurationMistakeTests {
    @Test("a mistyped TIKTOK_FORWARDER_* variable stops every command, with a did-you-mean", arguments: [["status"], ["run"], ["config", "check"], ["dead", "list"]])
    func mistypedVariable(_ command: [String]) throws {
        let directory = TemporaryDirectory()
        let db = directory.path + "/outbox.sqlite"
        #expect(try ChildProcess.run(Repository.binary, ["migrate", "--db", db], in: directory).status == 0)
        let result = try ChildProcess.run(Repository.binary, command + ["--db", db],
                                          environment: ["TIKTOK_FORWARDER_TEST_EVNT_CODE": "TEST123"], in: directory)
        #expect(result.status == 2, "\(command): exit \(result.status)")
        #expect(result.stderr.contains("TIKTOK_FORWARDER_TEST_EVNT_CODE is not a setting (did you mean TIKTOK_FORWARDER_TEST_EVENT_CODE?)"), "\(result.stderr)")
    }

    @Test("TIKTOK_FORWARDER_LOG_LEVEL=debug gives the daemon's per-request lines")
    func logLevelFromEnvironment() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(5))
        let arguments = ["run", "--db", rig.db, "--endpoint", "http://127.0.0.1:\(rig.port)", "--pixel-code", "P",
                         "--access-token-file", rig.tokenFile, "--until-drained", "--linger", "10ms"]
        let daemon = try ChildProcess.run(Repository.binary, arguments, environment: ["TIKTOK_FORWARDER_LOG_LEVEL": "debug"], in: rig.directory)
        #expect(daemon.status == 0)
        #expect(daemon.stderr.contains("DEBUG request"), "\(daemon.stderr)")
    }
}

@Suite("Operator tools, with real processes", .serialized)
struct OperatorToolTests {
    @Test("with --keep-sent, `show` gives a delivered row's event exactly as TikTok got it (hashed); retention removes it with the row")
    func showWhatWasSent() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(30))
        #expect(try rig.daemon(["--until-drained", "--keep-sent"], name: "keep").wait(timeout: 60) == 0)
        let shown = try ChildProcess.run(Repository.binary, ["show", "--db", rig.db, "ev-7"], in: rig.directory)
        #expect(shown.status == 0, "\(shown.stderr)")
        let row = try JSONParser.parse(shown.stdout.trimmingWhitespace())
        #expect(row["state"] == .string("delivered") && row["finished"] != nil)
        let sent = try #require(row["sent"])
        #expect(sent["event_id"] == .string("ev-7") && sent["event"] == .string("CompletePayment"))
        let email = try #require(sent.value(at: ["user", "email"])?.stringValue)
        #expect(email.count == 64 && email.allSatisfy(\.isHexDigit), "hashed: \(email)")
        let recorded = try String(contentsOfFile: rig.record, encoding: .utf8).split(separator: "\n").first { $0.contains(#""event_id":"ev-7""#) }
        let recordedEmail = try JSONParser.parse(String(try #require(recorded)))["event"]?.value(at: ["user", "email"])
        #expect(recordedEmail == .string(email), "the kept event is what the sandbox received")
        usleep(20_000)
        #expect(try rig.daemon(["--until-drained", "--retention", "10ms"], name: "purge").wait(timeout: 60) == 0)
        let left = try ChildProcess.run("/usr/bin/sqlite3", [rig.db, "SELECT count(*) FROM sent_events; SELECT count(*) FROM outbox;"], in: rig.directory)
        #expect(left.stdout == "0\n0\n", "\(left.stdout)")
    }

    @Test("a skipped event is named in the log at info; dropped optional fields are logged and counted per field; a flood is capped")
    func skippedAndDroppedAreVisible() throws {
        let rig = try Rig()
        var events = (0..<3).map { NewEvent(eventID: "unmapped-\($0)", payload: #"{"event_name":"login","url":"https://s.example/"}"#) }
        events += (0..<2).map { NewEvent(eventID: "badcur-\($0)", payload: #"{"event_name":"purchase","url":"https://s.example/","currency":"DOGE","value":"1,5"}"#) }
        events += (0..<40).map { NewEvent(eventID: "flood-\($0)", payload: #"{"event_name":"login","url":"https://s.example/"}"#) }
        try rig.enqueue(events)
        let daemon = try rig.daemon(["--metrics-listen", "127.0.0.1:0", "--max-batch-events", "5", "--max-in-flight", "1"])
        let url = try #require(Rig.metricsURL(of: daemon, timeout: 10), "\(daemon.stderr)")
        #expect(try rig.waitDrained(timeout: 30))
        let metrics = try ChildProcess.run("/usr/bin/curl", ["-s", url], in: rig.directory).stdout
        #expect(metrics.contains(#"tiktok_forwarder_dropped_fields_total{field="properties.currency"} 2"#), "\(metrics)")
        #expect(metrics.contains(#"tiktok_forwarder_dropped_fields_total{field="properties.value"} 2"#))
        #expect(metrics.contains(#"tiktok_forwarder_events_total{outcome="skipped",destination="default"} 43"#))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        let log = daemon.stderr
        #expect(log.contains("INFO event skipped") && log.contains("event_id=unmapped-0") && log.contains("reason="))
        #expect(log.contains("INFO optional fields dropped") && log.contains("event_id=badcur-0"))
        let lines = log.split(separator: "\n").filter { $0.contains("INFO event skipped") || $0.contains("INFO optional fields dropped") }
        #expect(lines.count == 20, "45 notable events, at most 20 lines a minute from the one worker: \(lines.count)")
    }
}
