import ForwarderCore
import ForwarderSandbox
import ForwarderTransport
import Foundation
import Testing
import TestSupport

/// The curl transport against the real sandbox over loopback.
@Suite("Transport against the sandbox", .serialized)
struct TransportTests {
    static let token = "sandbox-token-123"
    static let event = #"{"event":"Purchase","event_time":1795000000,"event_id":"e1","page":{"url":"https://s.example/"}}"#

    static func body(events: Int = 1) -> [UInt8] {
        TrackRequest.body(sourceID: "PIXEL1", testEventCode: nil, events: Array(repeating: Array(event.utf8), count: events))
    }

    static func sandbox(_ configure: (inout SandboxServer.Configuration) -> Void = { _ in }) throws -> SandboxServer {
        var config = SandboxServer.Configuration(accessToken: token)
        configure(&config)
        return try SandboxServer(configuration: config)
    }

    static func transport(_ server: SandboxServer, timeoutMillis: Int = 5_000) throws -> CurlTransport {
        try CurlTransport(configuration: .init(url: CurlTransport.Configuration.trackURL(base: "http://127.0.0.1:\(server.port)"),
                                               connectTimeoutMillis: 2_000, totalTimeoutMillis: timeoutMillis))
    }

    @Test("a valid batch is delivered and recorded exactly")
    func delivered() throws {
        let directory = TemporaryDirectory()
        let record = directory.path + "/record.ndjson"
        let server = try Self.sandbox { $0.recordPath = record }
        defer { try? server.close() }
        let result = try Self.transport(server).post(body: Self.body(events: 3), accessToken: Self.token)
        #expect(ResponseClassifier.classify(result) == .delivered)
        try server.close()
        let lines = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        let first = try JSONParser.parse(String(lines[0]))
        #expect(first["event"] == (try JSONParser.parse(Self.event)))
        #expect(first["event_source_id"] == .string("PIXEL1") && first["test_event_code"] == .null)
        #expect(server.stats.duplicates == 2 && server.stats.eventsAccepted == 3)
    }

    @Test("a wrong token is a configuration error; 40002 names the index")
    func tokenAndInvalid() throws {
        let server = try Self.sandbox { $0.rejectEventIDPrefix = "bad-" }
        defer { try? server.close() }
        let transport = try Self.transport(server)
        guard case .configurationError = ResponseClassifier.classify(transport.post(body: Self.body(), accessToken: "wrong")) else {
            Issue.record("expected a configuration error"); return
        }
        let events = [Self.event, Self.event.replacingOccurrences(of: "\"e1\"", with: "\"bad-2\"")].map { Array($0.utf8) }
        let body = TrackRequest.body(sourceID: "P", testEventCode: "TEST123", events: events)
        guard case .invalidEvent(index: 1, let message) = ResponseClassifier.classify(transport.post(body: body, accessToken: Self.token)) else {
            Issue.record("expected 40002 naming index 1"); return
        }
        #expect(message.contains("data.1.event_id"))
    }

    @Test("every fault kind is classified correctly", arguments: ["fail", "rate_limit", "http429", "reset", "timeout"])
    func faults(kind: String) throws {
        let server = try Self.sandbox {
            switch kind {
            case "fail": $0.failRate = 1
            case "rate_limit": $0.rateLimitRate = 1
            case "http429": $0.http429Rate = 1
            case "reset": $0.resetRate = 1
            default: $0.timeoutRate = 1
            }
        }
        defer { try? server.close() }
        let outcome = ResponseClassifier.classify(try Self.transport(server, timeoutMillis: 400).post(body: Self.body(), accessToken: Self.token))
        switch (kind, outcome) {
        case ("fail", .retry(_, nil, true)), ("rate_limit", .rateLimited(_, nil)), ("http429", .rateLimited(_, 1_000)):
            break
        case ("reset", .retry(let reason, nil, true)) where reason.hasPrefix("connection reset"):
            break
        case ("timeout", .retry(let reason, nil, true)) where reason.hasPrefix("timed out"):
            break
        default:
            Issue.record("\(kind) classified as \(outcome)")
        }
        #expect(server.stats.faults[kind] == 1)
    }

    @Test("the total timeout is honoured to within 10 %")
    func timeoutPrecision() throws {
        let server = try Self.sandbox { $0.timeoutRate = 1 }
        defer { try? server.close() }
        let transport = try Self.transport(server, timeoutMillis: 1_000)
        let start = ContinuousClock.now
        _ = transport.post(body: Self.body(), accessToken: Self.token)
        let elapsed = (ContinuousClock.now - start) / .milliseconds(1)
        #expect(elapsed >= 900 && elapsed <= 1_100, "took \(elapsed) ms for a 1,000 ms timeout")
    }

    @Test("nothing listening is a connect failure: nothing was sent")
    func connectFailure() throws {
        let server = try Self.sandbox()
        let port = server.port
        try server.close()
        let transport = try CurlTransport(configuration: .init(url: "http://127.0.0.1:\(port)/open_api/v1.3/event/track/", connectTimeoutMillis: 1_000, totalTimeoutMillis: 2_000))
        #expect(transport.post(body: Self.body(), accessToken: Self.token) == .failure(TransportFailure(kind: .connect, bodySent: false, detail: "Couldn't connect to server")))
    }

    @Test("1,000 sequential requests use one connection")
    func connectionReuse() throws {
        let server = try Self.sandbox { $0.countOnly = true }
        defer { try? server.close() }
        let transport = try Self.transport(server)
        let body = Self.body(events: 2)
        for _ in 0..<1_000 {
            #expect(ResponseClassifier.classify(transport.post(body: body, accessToken: Self.token)) == .delivered)
        }
        #expect(transport.connectionsOpened == 1)
        #expect(server.stats.connections == 1 && server.stats.requests == 1_000 && server.stats.eventsAccepted == 2_000)
    }

    @Test("a 2 MiB body does not stall on Expect: 100-continue")
    func largeBody() throws {
        let server = try Self.sandbox { $0.countOnly = true }
        defer { try? server.close() }
        let transport = try Self.transport(server)
        let big = Self.body(events: 2 * 1024 * 1024 / Self.event.utf8.count + 1)
        #expect(big.count > 2 * 1024 * 1024)
        let start = ContinuousClock.now
        #expect(ResponseClassifier.classify(transport.post(body: big, accessToken: Self.token)) == .delivered)
        #expect(ContinuousClock.now - start < .milliseconds(500))
    }

    @Test("--seed makes a fault sequence reproducible")
    func seededFaults() throws {
        func sequence(seed: UInt64) throws -> [String] {
            let server = try Self.sandbox { $0.seed = seed; $0.failRate = 0.3; $0.rateLimitRate = 0.3; $0.countOnly = true }
            defer { try? server.close() }
            let transport = try Self.transport(server)
            return (0..<40).map { _ in "\(ResponseClassifier.classify(transport.post(body: Self.body(), accessToken: Self.token)))" }
        }
        let a = try sequence(seed: 7)
        #expect(a == (try sequence(seed: 7)))
        #expect(a != (try sequence(seed: 8)))
        #expect(Set(a).count == 3)  // delivered, retry, rate limited all occur
    }
}
