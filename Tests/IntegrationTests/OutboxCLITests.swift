import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

/// The outbox as producers and operators use it: the real binary, the sqlite3 shell, Python.
@Suite("Outbox CLI and the README's producer snippets")
struct OutboxCLITests {
    let directory = TemporaryDirectory()
    var db: String { directory.path + "/outbox.sqlite" }

    func forwarder(_ arguments: [String], stdin: Data? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        try ChildProcess.run(Repository.binary, arguments, stdin: stdin, in: directory)
    }

    @Test("after migrate, the README's INSERT works verbatim from the sqlite3 shell, and a repeat changes nothing")
    func readmeInsertInShell() throws {
        #expect(try forwarder(["migrate", "--db", db]).status == 0)
        let insert = try Readme.snippet("producer-sql")
        let script = ".param set ?1 'evt-1'\n.param set ?2 '{\"event_name\":\"purchase\"}'\n" + insert + insert
            + "SELECT count(*), min(event_id), min(state), min(attempts) FROM outbox_rows;\n"
        let result = try ChildProcess.run("/usr/bin/sqlite3", [db], stdin: Data(script.utf8), in: directory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "1|evt-1|pending|0\n")
    }

    @Test("the README's shell, Python and operator snippets run as written")
    func readmeSnippets() throws {
        #expect(try forwarder(["migrate", "--db", db]).status == 0)
        let shell = try ChildProcess.run("/bin/sh", ["-c", try Readme.snippet("producer-shell")], environment: ["DB": db], in: directory)
        #expect(shell.status == 0, "\(shell.stderr)")
        let python = try ChildProcess.run("/usr/bin/env", ["python3", "-c", "DB = \(pythonString(db))\n" + (try Readme.snippet("producer-python"))], in: directory)
        #expect(python.status == 0, "\(python.stderr)")
        try #"{"event_id":"nd-1","event_name":"purchase","url":"https://shop.example/"}"#.write(toFile: directory.path + "/events.ndjson", atomically: true, encoding: .utf8)
        let binDir = (Repository.binary as NSString).deletingLastPathComponent
        let enqueue = try ChildProcess.run("/bin/sh", ["-c", "cd \(directory.path) && " + (try Readme.snippet("enqueue-shell"))],
                                           environment: ["DB": db, "PATH": binDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "")], in: directory)
        #expect(enqueue.status == 0, "\(enqueue.stderr)")
        let backup = try ChildProcess.run("/bin/sh", ["-c", try Readme.snippet("backup-shell")], environment: ["DB": db], in: directory)
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(FileManager.default.fileExists(atPath: db + ".before-upgrade"))
        let operatorQueries = try ChildProcess.run("/usr/bin/sqlite3", [db], stdin: Data(try Readme.snippet("operator-sql").utf8), in: directory)
        #expect(operatorQueries.status == 0, "\(operatorQueries.stderr)")
        #expect(operatorQueries.stdout.hasPrefix("pending|3|"))
        let store = try SQLiteOutboxStore(path: db)
        #expect(try store.stats(now: 0).count(.pending) == 3, "the shell, Python and enqueue snippets each added one")
    }

    @Test("enqueue of 10,000 lines with 100 repeated event_ids and one malformed line: 9,900 pending, the line reported, exit 1")
    func enqueueWithDuplicatesAndMalformedLine() throws {
        var lines: [String] = []
        for i in 0..<9_900 { lines.append(#"{"event_id":"e\#(i)","event_name":"purchase","value":\#(i)}"#) }
        for i in 0..<99 { lines.append(#"{"context":{"event_id":"e\#(i * 7)"},"event_name":"purchase"}"#) }
        lines.insert("{this is not json", at: 5_000)
        #expect(lines.count == 10_000)
        #expect(try forwarder(["migrate", "--db", db]).status == 0)
        let result = try forwarder(["enqueue", "--db", db], stdin: Data(lines.joined(separator: "\n").utf8))
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 5001: rejected: not JSON"))
        #expect(result.stdout.contains("inserted 9900, duplicates 99, rejected 1"))

        let status = try forwarder(["status", "--db", db, "--json"])
        #expect(status.status == 0)
        let json = try JSONParser.parse(status.stdout.trimmingWhitespace())
        #expect(json.value(at: ["counts", "pending"]) == .number("9900"))
        #expect(json.value(at: ["counts", "dead"]) == .number("0"))

        let view = try ChildProcess.run("/usr/bin/sqlite3", [db, "SELECT count(*) FROM dead_letters; SELECT rows FROM outbox_summary WHERE state = 'pending';"], in: directory)
        #expect(view.stdout == "0\n9900\n")
    }

    @Test("enqueue reads a file, accepts context.event_id, and exits 0 when every line is good")
    func enqueueFile() throws {
        let file = directory.path + "/events.ndjson"
        try #"{"event_name":"purchase","context":{"event_id":"c-1"}}"#.appending("\n\n{\"event_id\":2,\"event_name\":\"x\"}\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try forwarder(["migrate", "--db", db]).status == 0, "only migrate and run create an outbox")
        let result = try forwarder(["enqueue", "--db", db, file])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("inserted 2, duplicates 0, rejected 0"))
    }

    @Test("dead letters can be listed, shown, redriven and purged from the CLI")
    func deadLetterWorkflow() throws {
        let store = try SQLiteOutboxStore(path: db)
        _ = try store.enqueue([NewEvent(eventID: "bad-1", payload: "not json"), NewEvent(eventID: "bad-2", payload: #"{"event_name":"purchase"}"#)], now: 1_000)
        let rows = try store.claim(limit: 2, owner: "test", leaseUntil: 99_000, now: 1_000)
        _ = try store.settle(rows.map { .dead(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 40002, error: "data.0.event_id: not a valid string")) },
                         owner: "test", now: 2_000)

        let list = try forwarder(["dead", "list", "--db", db])
        #expect(list.status == 0)
        #expect(list.stdout.contains("bad-1") && list.stdout.contains("data.0.event_id: not a valid string"))
        let show = try forwarder(["dead", "show", "--db", db, "bad-2"])
        #expect(show.status == 0)
        #expect(try JSONParser.parse(show.stdout.trimmingWhitespace()).value(at: ["payload", "event_name"]) == .string("purchase"))
        #expect(try forwarder(["dead", "show", "--db", db, "nope"]).status == 1)
        #expect(try forwarder(["dead", "redrive", "--db", db]).status != 0)  // must name what
        let redrive = try forwarder(["dead", "redrive", "--db", db, "bad-1"])
        #expect(redrive.stdout.contains("redriven 1"))
        let purge = try forwarder(["dead", "purge", "--db", db, "--all"])
        #expect(purge.stdout.contains("purged 1"))
        let stats = try store.stats(now: 3_000)
        #expect(stats.count(.pending) == 1 && stats.count(.dead) == 0)
    }

    @Test("dead letters v2: totals, time, reason codes and filters; redrive and purge by ids, filters or --all, with --dry-run; unknown ids reported with exit 1")
    func deadLetterFilters() throws {
        let store = try SQLiteOutboxStore(path: db)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try store.enqueue((0..<6).map { NewEvent(eventID: "d\($0)", payload: #"{"event_name":"\#($0 % 2 == 0 ? "purchase" : "sign_up")"}"#) }, now: now - 10_000)
        let rows = try store.claim(limit: 6, owner: "t", leaseUntil: now + 60_000, now: now - 10_000)
        let errors = ["TikTok rejected the event: HTTP 200, code 40002: data.0.event_id", "rejected by the transform: no page URL",
                      "gave up after 30 attempts: HTTP 500", "TikTok rejected the event: data.3", "gave up after 3 claims (max_attempts 3), 3 of them ended without a result",
                      "ambiguous delivery: …"]
        _ = try store.settle(zip(rows, errors).map { .dead(id: $0.0.id, AttemptRecord(error: $0.1)) }, owner: "t", now: now - 3 * 3_600_000)
        // d0 and d1 dead 3 hours ago; make d2…d5 recent.
        try SQLiteConnection(path: db).execute("UPDATE row_state SET finished_at = \(now - 60_000) WHERE id IN (SELECT id FROM outbox WHERE event_id IN ('d2', 'd3', 'd4', 'd5'))")

        let list = try forwarder(["dead", "list", "--db", db])
        #expect(list.status == 0 && list.stdout.hasPrefix("dead letters: 6\n"), "\(list.stdout)")
        #expect(list.stdout.contains("REASON") && list.stdout.contains("crashed") && list.stdout.contains("ambiguous") && list.stdout.contains("Z "))
        let rejected = try forwarder(["dead", "list", "--db", db, "--reason", "rejected"])
        #expect(rejected.stdout.hasPrefix("dead letters: 6, 2 matching") && rejected.stdout.contains("d0") && rejected.stdout.contains("d3") && !rejected.stdout.contains("d1 "))
        let recentPurchases = try forwarder(["dead", "list", "--db", db, "--since", "1h", "--event", "purchase"])
        #expect(recentPurchases.stdout.hasPrefix("dead letters: 6, 2 matching"), "\(recentPurchases.stdout)")  // d2, d4
        #expect(try forwarder(["dead", "list", "--db", db, "--reason", "nonsense"]).status == 2)
        let json = try forwarder(["dead", "list", "--db", db, "--json", "--older-than", "2h"]).stdout.split(separator: "\n")
        #expect(json.count == 2 && json.allSatisfy { $0.contains("\"reason\":") && $0.contains("\"dead_since\":\"") })

        let dry = try forwarder(["dead", "redrive", "--db", db, "--reason", "rejected", "--dry-run"])
        #expect(dry.status == 0 && dry.stdout.contains("would redrive 2"))
        #expect(try store.stats(now: now).count(.dead) == 6, "a dry run changes nothing")
        let byFilter = try forwarder(["dead", "redrive", "--db", db, "--reason", "rejected"])
        #expect(byFilter.stdout.contains("redriven 2"))
        let withUnknown = try forwarder(["dead", "redrive", "--db", db, "d1", "no-such-id", "d0"])
        #expect(withUnknown.status == 1 && withUnknown.stdout.contains("redriven 1"), "d0 is no longer dead; d1 is")
        #expect(withUnknown.stderr.contains("not dead letters") && withUnknown.stderr.contains("no-such-id") && withUnknown.stderr.contains("d0"))
        #expect(try forwarder(["dead", "purge", "--db", db, "--all", "--dry-run"]).stdout.contains("would purge 3"))
        #expect(try forwarder(["dead", "purge", "--db", db, "d5"]).stdout.contains("purged 1"))
        #expect(try forwarder(["dead", "purge", "--db", db, "--all"]).stdout.contains("purged 2"))
        #expect(try forwarder(["dead", "purge", "--db", db, "--all", "--reason", "crashed"]).status == 2, "one kind of selection at a time")
        let stats = try store.stats(now: now)
        #expect(stats.count(.dead) == 0 && stats.count(.pending) == 3)

        // `show` finds rows in any state.
        let pending = try forwarder(["show", "--db", db, "d1"])
        #expect(pending.status == 0)
        let shown = try JSONParser.parse(pending.stdout.trimmingWhitespace())
        #expect(shown["state"] == .string("pending") && shown["attempts"] == .number("0") && shown.value(at: ["payload", "event_name"]) == .string("sign_up"))
        #expect(try forwarder(["show", "--db", db, "missing"]).status == 1)
    }

    @Test("a database with a newer schema is refused with a clear message")
    func newerSchemaRefusedByCLI() throws {
        #expect(try forwarder(["migrate", "--db", db]).status == 0)
        _ = try ChildProcess.run("/usr/bin/sqlite3", [db, "PRAGMA user_version = 999"], in: directory)
        let result = try forwarder(["status", "--db", db])
        #expect(result.status != 0)
        #expect(result.stderr.contains("newer than this binary"))
    }
}

func pythonString(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}

@Suite("transform on mixed input")
struct TransformCLITests {
    @Test("good, unmapped, malformed and id-less lines: one result per line, exit 0; bad usage exits 2")
    func mixed() throws {
        let directory = TemporaryDirectory()
        let input = """
            {"event_id":"p1","event_name":"purchase","page":{"location":{"href":"https://s.example/"}},"user":{"email":" Jane@Example.com "},"value":"12.50","currency":"eur"}
            {"event_id":"u1","event_name":"scroll_depth","page":{"location":{"href":"https://s.example/"}}}
            {"event_id":"m1","event_name":
            {"event_name":"purchase","page":{"location":{"href":"https://s.example/"}}}

            [1,2,3]
            {"context":{"event_id":"c1"},"event_name":"add_to_cart","page":{"location":{"href":"https://s.example/p"}}}
            """
        let result = try ChildProcess.run(Repository.binary, ["transform", "--set", "user.locale=fr-FR"], stdin: Data(input.utf8), in: directory)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try result.stdout.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        #expect(lines.map { $0["line"] } == [1, 2, 3, 4, 6, 7].map { JSON.number("\($0)") })
        #expect(lines.map { $0["outcome"]?.stringValue } == ["event", "skipped", "rejected", "rejected", "rejected", "event"])
        let event = try #require(lines[0]["event"])
        #expect(event["event"]?.stringValue == "CompletePayment" && event["event_id"]?.stringValue == "p1")
        #expect(event["user"]?["email"]?.stringValue == SHA256Hasher().hexDigest("jane@example.com"))
        #expect(event["user"]?["locale"]?.stringValue == "fr-FR")
        #expect(event["properties"]?["currency"]?.stringValue == "EUR")
        #expect(!result.stdout.contains("Jane") && !result.stdout.contains("jane@"))
        #expect(lines[1]["reason"]?.stringValue?.contains("scroll_depth") == true && lines[1]["event"] == nil)
        #expect(lines[2]["reason"]?.stringValue?.contains("not JSON") == true)
        #expect(lines[3]["reason"]?.stringValue?.contains("no event id") == true)
        #expect(lines[5]["event"]?["event_id"]?.stringValue == "c1")

        let usage = try ChildProcess.run(Repository.binary, ["transform", "--preset", "modern"], stdin: Data(), in: directory)
        #expect(usage.status == 2 && usage.stderr.contains("'modern' is not a preset"))
        let config = directory.path + "/c.yaml"
        try "transform:\n  events:\n    scroll_depth: ViewContent\n".write(toFile: config, atomically: true, encoding: .utf8)
        let mapped = try ChildProcess.run(Repository.binary, ["transform", "--config", config], stdin: Data(input.utf8), in: directory)
        #expect(mapped.stdout.split(separator: "\n")[1].contains(#""outcome":"event""#))
    }

    @Test("rows as producers write them, and bare payloads with --event-id: the request TikTok would get and which source filled each field")
    func producerRows() throws {
        let directory = TemporaryDirectory()
        let payload = #"{"event_name":"purchase","id":"1002","value":19.99,"currency":"EUR","user":{"email":"joe@example.com","phone":"+33612345678","lang":"fr-FR","loyalty":"L-77"},"url":"https://shop.example/checkout?ttclid=E.C.P.abc"}"#
        let input = #"{"event_id":"ord-1002-purchase","payload":\#(payload)}"# + "\n"
            + #"{"event_id":"ord-1003","payload":"{\"event_name\":\"sign_up\",\"url\":\"https://s.example/\"}"}"# + "\n"
        let config = directory.path + "/c.yaml"
        try "pixel_code: CPIXEL123\ntest_event_code: TEST42\npartner_name: AcmeShop\ntransform:\n  map:\n    user.locale: [context.missing, user.lang]\n    user.loyalty_id: user.loyalty\n  set:\n    properties.channel: web-shop\n  hash: user.loyalty_id\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try ChildProcess.run(Repository.binary, ["transform", "--config", config], stdin: Data(input.utf8), in: directory)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try result.stdout.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        #expect(lines.count == 2 && lines.allSatisfy { $0["outcome"] == .string("event") })
        #expect(lines[0]["event_id"] == .string("ord-1002-purchase") && lines[1]["event_id"] == .string("ord-1003"))
        let request = try #require(lines[0]["request"])
        #expect(request["event_source"] == .string("web") && request["event_source_id"] == .string("CPIXEL123") && request["test_event_code"] == .string("TEST42"))
        #expect(request["partner_name"] == .string("AcmeShop"), "partner_name only when configured")
        #expect(lines[0]["sources"]?["user.locale"] == .string("user.lang"), "a YAML list of paths, first present wins")
        #expect(lines[0]["event"]?.value(at: ["user", "locale"]) == .string("fr-FR"))
        #expect(request.value(at: ["data", "0", "properties", "channel"]) == .string("web-shop"), "a custom event property")
        #expect(request.value(at: ["data", "0", "user", "loyalty_id"]) == .string(SHA256Hasher().hexDigest("l-77")), "a hashed custom user property")
        #expect(lines[0]["sources"]?["properties.channel"] == .string("constant (transform.set)") && lines[0]["sources"]?["user.loyalty_id"] == .string("user.loyalty (hashed)"))
        #expect(request["data"]?.value(at: ["0", "event_id"]) == .string("ord-1002-purchase"))
        #expect(TrackRequestValidator.firstProblem(in: request) == nil, "a request the sandbox (TikTok's rules) accepts")
        let sources = try #require(lines[0]["sources"])
        #expect(sources["user.email"] == .string("user.email") && sources["page.url"] == .string("url") && sources["properties.value"] == .string("value"))
        #expect(sources["event_time"] == nil, "no time in the payload: the insert time is used")
        #expect(!result.stdout.contains("joe@example.com") && !result.stdout.contains("+33612345678"))

        // The README's bare payload, with the id the producer would put in the column.
        let bare = try ChildProcess.run(Repository.binary, ["transform", "--event-id", "ord-1001-purchase"], stdin: Data((payload + "\n").utf8), in: directory)
        let line = try JSONParser.parse(bare.stdout.trimmingWhitespace())
        #expect(line["event_id"] == .string("ord-1001-purchase") && line["event"]?["event_id"] == .string("ord-1001-purchase"))
        #expect(line["request"]?["event_source_id"] == .string("PIXEL_CODE") && line["request"]?["partner_name"] == nil)
    }

    @Test("with destinations: each row through its destination's settings, the request addressed to its source and id; config check lists them; enqueue --destination fills the column")
    func destinations() throws {
        let directory = TemporaryDirectory()
        let config = directory.path + "/c.yaml"
        try "tok".write(toFile: directory.path + "/token", atomically: true, encoding: .utf8)
        try """
            db: \(directory.path)/outbox.sqlite
            access_token_file: \(directory.path)/token
            destinations:
              - name: web
                pixel_code: CWEBPIXEL
              - name: app
                event_source: app
                event_source_id: "7123456789"
                test_event_code: TESTAPP
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let app = #"{"event_name":"sign_up","context":{"app":{"namespace":"com.shop"},"device":{"os":"iOS","advertising_id":"6d92078a-8246-4ba4-ae5b-76104861e7dc"}}}"#
        let web = #"{"event_name":"sign_up","url":"https://s.example/"}"#
        let input = [#"{"event_id":"a1","payload":\#(app),"destination":"app"}"#, #"{"event_id":"w1","payload":\#(web)}"#,
                     #"{"event_id":"g1","payload":\#(web),"destination":"ghost"}"#].joined(separator: "\n") + "\n"
        let result = try ChildProcess.run(Repository.binary, ["transform", "--config", config], stdin: Data(input.utf8), in: directory)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try result.stdout.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        #expect(lines.map { $0["destination"]?.stringValue } == ["app", "web", nil])
        #expect(lines[0]["request"]?["event_source"] == .string("app") && lines[0]["request"]?["event_source_id"] == .string("7123456789"))
        #expect(lines[0]["request"]?["test_event_code"] == .string("TESTAPP") && lines[0]["event"]?["event"] == .string("Registration"))
        #expect(lines[0]["sources"]?["user.idfa"] != nil && lines[0]["sources"]?["event_source"] == .string("app"))
        #expect(lines[1]["request"]?["event_source_id"] == .string("CWEBPIXEL") && lines[1]["event"]?["event"] == .string("CompleteRegistration"))
        #expect(lines[2]["outcome"] == .string("rejected") && lines[2]["reason"]?.stringValue?.contains("'ghost' is not configured") == true)
        for line in lines.prefix(2) { #expect(TrackRequestValidator.firstProblem(in: line["request"]!) == nil) }
        let chosen = try ChildProcess.run(Repository.binary, ["transform", "--config", config, "--destination", "app", "--event-id", "x"],
                                          stdin: Data((app + "\n").utf8), in: directory)
        #expect(chosen.stdout.contains(#""event_source":"app""#), "\(chosen.stderr)")
        let unknown = try ChildProcess.run(Repository.binary, ["transform", "--config", config, "--destination", "nope"], stdin: Data(), in: directory)
        #expect(unknown.status == 2 && unknown.stderr.contains("'nope' is not configured"))

        let check = try ChildProcess.run(Repository.binary, ["config", "check", "--config", config], in: directory)
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("destination web, the default (rows whose destination is NULL): web CWEBPIXEL"), "\(check.stdout)")
        #expect(check.stdout.contains("destination app: app 7123456789") && check.stdout.contains("test_event_code TESTAPP") && !check.stdout.contains("tok;"))

        _ = try ChildProcess.run(Repository.binary, ["migrate", "--db", directory.path + "/outbox.sqlite"], in: directory)
        let enqueue = try ChildProcess.run(Repository.binary, ["enqueue", "--db", directory.path + "/outbox.sqlite", "--destination", "app"],
                                           stdin: Data(#"{"event_id":"e1","event_name":"login"}"#.utf8 + [10]), in: directory)
        #expect(enqueue.status == 0, "\(enqueue.stderr)")
        let column = try ChildProcess.run("/usr/bin/sqlite3", [directory.path + "/outbox.sqlite", "SELECT destination FROM outbox"], in: directory)
        #expect(column.stdout.trimmingWhitespace() == "app")
    }
}
