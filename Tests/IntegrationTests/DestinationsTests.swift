import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

@Suite("Several destinations from one outbox, with real processes", .serialized)
struct DestinationsTests {
    static func config(_ rig: Rig, extra: String = "") -> String {
        """
        db: \(rig.db)
        endpoint: http://127.0.0.1:\(rig.port)
        log_level: info
        delivery:
          linger: 10ms
          request_timeout: 1s
          lease: 3s
          backoff_base: 20ms
          backoff_max: 300ms
          probe_interval: 200ms
        transform:
          preset: current
        destinations:
          - name: web-fr
            pixel_code: CFRPIXEL
            access_token_file: \(rig.directory.path)/tok-a
          - name: app
            event_source: app
            event_source_id: "7123456789"
            access_token_file: \(rig.directory.path)/tok-b
            transform:
              events:
                purchase:
                  map: {properties.value: [revenue]}
          - name: crm
            event_source: crm
            event_source_id: "7000000000000000003"
            access_token_file: \(rig.directory.path)/tok-c
        \(extra)
        """
    }

    @Test("three pixels: the two with valid tokens deliver, the revoked one pauses alone (nothing dead) and resumes when fixed; an unknown destination is dead until configured")
    func threeDestinations() throws {
        let rig = try Rig(token: "tok-a", sandbox: ["--access-token", "tok-b"])  // tok-c is not accepted: revoked
        for name in ["tok-a", "tok-b", "tok-c"] { try name.write(toFile: rig.directory.path + "/" + name, atomically: true, encoding: .utf8) }
        let configPath = rig.directory.path + "/config.yaml"
        try Self.config(rig).write(toFile: configPath, atomically: true, encoding: .utf8)

        let app = { (i: Int) in
            #"{"event_name":"purchase","revenue":\#(i + 1),"value":999,"context":{"app":{"namespace":"com.shop","version":"5.1"},"device":{"os":"Android 14","advertising_id":"6D92078A-8246-4BA4-AE5B-76104861E7DC"}}}"#
        }
        let crm = { (i: Int) in #"{"event_name":"lead_qualified","lead_id":"L-\#(i)","user":{"email":"lead\#(i)@example.com"}}"# }
        var events = Rig.events(200, prefix: "web-")                                          // destination NULL: the default (web-fr)
        events += (0..<20).map { NewEvent(eventID: "named-\($0)", payload: Rig.events(1)[0].payload, destination: "web-fr") }
        events += (0..<100).map { NewEvent(eventID: "app-\($0)", payload: app($0), destination: "app") }
        events += (0..<50).map { NewEvent(eventID: "crm-\($0)", payload: crm($0), destination: "crm") }
        events += (0..<5).map { NewEvent(eventID: "ghost-\($0)", payload: Rig.events(1)[0].payload, destination: "ghost") }
        try rig.enqueue(events)

        let daemon = try ChildProcess(Repository.binary, ["run", "--config", configPath], in: rig.directory, name: "daemon")
        #expect(try waitUntil(timeout: 60) { try rig.stats().count(.delivered) == 320 }, "\(daemon.stderr)")
        #expect(try waitUntil(timeout: 10) { try rig.stats().count(.dead) == 5 })
        let stats = try rig.stats()
        #expect(stats.count(.pending) + stats.count(.inflight) == 50, "the revoked pixel's rows wait")
        #expect(try rig.store.deadLetters(limit: 10).allSatisfy { $0.eventID.hasPrefix("ghost-") && DeadReason.of(error: $0.error) == .unknownDestination })
        #expect(try rig.attempts(state: "pending").allSatisfy { $0 == 0 }, "a pause consumes no attempt")

        // What TikTok got: each destination's events under its own source and id, nothing mixed.
        var byID: [String: Set<String>] = [:]
        for line in try String(contentsOfFile: rig.record, encoding: .utf8).split(separator: "\n") {
            let record = try JSONParser.parse(String(line))
            let key = "\(record["event_source"]?.stringValue ?? "?") \(record["event_source_id"]?.stringValue ?? "?")"
            byID[key, default: []].insert(record["event"]?["event_id"]?.stringValue ?? "?")
        }
        #expect(byID["web CFRPIXEL"]?.count == 220 && byID["app 7123456789"]?.count == 100 && byID.count == 2, "\(byID.mapValues(\.count))")
        #expect(byID["app 7123456789"]?.allSatisfy { $0.hasPrefix("app-") } == true)
        let appRecord = try #require(try String(contentsOfFile: rig.record, encoding: .utf8).split(separator: "\n").first { $0.contains(#""event_id":"app-4""#) })
        let appEvent = try #require(try JSONParser.parse(String(appRecord))["event"])
        #expect(appEvent["properties"]?["value"] == .number("5"), "the app destination's per-event override: value from revenue")
        #expect(appEvent["user"]?["gaid"]?.stringValue == "6d92078a-8246-4ba4-ae5b-76104861e7dc" && appEvent["app"]?["app_id"]?.stringValue == "com.shop")

        // status names the paused destination and shows each destination's rows (the daemon
        // writes its status row every 2 s).
        var status = (status: Int32(0), stdout: "", stderr: "")
        #expect(try waitUntil(timeout: 10) {
            status = try ChildProcess.run(Repository.binary, ["status", "--db", rig.db], in: rig.directory)
            return status.stdout.contains("PAUSED")
        })
        #expect(status.stdout.contains("PAUSED: destination 'crm': ") && status.stdout.contains("40105"), "\(status.stdout)")
        #expect(status.stdout.contains("by destination") && status.stdout.contains("ghost") && status.stdout.contains("crm"), "\(status.stdout)")
        let json = try JSONParser.parse(try ChildProcess.run(Repository.binary, ["status", "--db", rig.db, "--json"], in: rig.directory).stdout)
        guard case .array(let perDestination)? = json["destinations"] else { Issue.record("no destinations in status --json"); return }
        let crmEntry = try #require(perDestination.first { $0["destination"]?.stringValue == "crm" })
        #expect(crmEntry["pending"] == .number("50") && crmEntry["paused_reason"]?.stringValue?.contains("40105") == true)
        guard case .array(let daemons)? = json["daemons"], let paused = daemons.first?["paused_reason"]?.stringValue else { Issue.record("no daemon"); return }
        #expect(paused.hasPrefix("destination 'crm': ") && !paused.contains("\n"), "crm alone is paused: \(paused)")

        // The token is fixed at TikTok: the probe notices, the crm rows go.
        let put = try ChildProcess.run("/usr/bin/curl", ["-s", "-X", "PUT", "--data-binary", "tok-a\ntok-b\ntok-c", "http://127.0.0.1:\(rig.port)/_sandbox/access-token"],
                                       in: rig.directory)
        #expect(put.status == 0)
        #expect(try waitUntil(timeout: 30) { try rig.stats().count(.delivered) == 370 }, "\(daemon.stderr)")
        #expect(try rig.recorded().filter { $0.key.hasPrefix("crm-") }.count == 50)
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        #expect(daemon.stderr.contains("destination=crm") && daemon.stderr.contains("delivery paused"), "the log names the paused destination")
        #expect(daemon.stderr.split(separator: "\n").filter { $0.contains("delivery paused") }.allSatisfy { $0.contains("destination=crm") }, "only crm paused")

        // The unknown destination, once configured: redrive and it is delivered.
        try Self.config(rig, extra: "  - name: ghost\n    pixel_code: CGHOST\n    access_token_file: \(rig.directory.path)/tok-a\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let redrive = try ChildProcess.run(Repository.binary, ["dead", "redrive", "--db", rig.db, "--reason", "unknown_destination"], in: rig.directory)
        #expect(redrive.status == 0, "\(redrive.stderr)")
        let again = try ChildProcess(Repository.binary, ["run", "--config", configPath, "--until-drained"], in: rig.directory, name: "again")
        #expect(again.wait(timeout: 60) == 0, "\(again.stderr)")
        #expect(try rig.stats().count(.delivered) == 375 && rig.stats().count(.dead) == 0)
        #expect(try String(contentsOfFile: rig.record, encoding: .utf8).contains(#""event_source_id":"CGHOST""#))
    }

    @Test("the example configuration's single pixel and an existing database keep working: NULL rows go to the top-level pixel")
    func singlePixelUnchanged() throws {
        let rig = try Rig()
        try rig.enqueue(Rig.events(50))
        let daemon = try rig.daemon(["--until-drained"])
        #expect(daemon.wait(timeout: 60) == 0, "\(daemon.stderr)")
        #expect(try rig.stats().count(.delivered) == 50)
        let first = try #require(try String(contentsOfFile: rig.record, encoding: .utf8).split(separator: "\n").first)
        #expect(first.contains(#""event_source":"web","event_source_id":"PIXEL42""#))
        #expect(daemon.stderr.contains("pixel_code=PIXEL42"), "the start line still names the pixel")
    }
}
