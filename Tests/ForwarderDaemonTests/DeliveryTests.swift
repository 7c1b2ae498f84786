import Foundation
import ForwarderCore
@testable import ForwarderDaemon
import Logging
import Testing

/// A transport that answers like TikTok would, from a rule over the request's event ids.
final class ScriptedTransport: EventTransport {
    var requests: [[String]] = []
    /// Each request's event_source, event_source_id and access token.
    var addresses: [(source: String, id: String, token: String)] = []
    var answer: ([String]) -> Result<HTTPResponse, TransportFailure>
    /// Answers by token first, when set (a revoked token answers 40105 whatever the events).
    var answerByToken: [String: Result<HTTPResponse, TransportFailure>] = [:]

    init(answer: @escaping ([String]) -> Result<HTTPResponse, TransportFailure>) { self.answer = answer }

    func post(body: UnsafeBufferPointer<UInt8>, accessToken: String) -> Result<HTTPResponse, TransportFailure> {
        var ids: [String] = []
        let request = try? JSONParser.parse(body)
        if case .array(let events)? = request?["data"] { ids = events.compactMap { $0["event_id"]?.stringValue } }
        requests.append(ids)
        addresses.append((request?["event_source"]?.stringValue ?? "?", request?["event_source_id"]?.stringValue ?? "?", accessToken))
        if let answer = answerByToken[accessToken] { return answer }
        if let request, let problem = TrackRequestValidator.firstProblem(in: request) { return Self.tiktok(40002, problem) }
        return answer(ids)
    }

    static func ok() -> Result<HTTPResponse, TransportFailure> { tiktok(0, "OK") }
    static func tiktok(_ code: Int, _ message: String, status: Int = 200) -> Result<HTTPResponse, TransportFailure> {
        .success(HTTPResponse(status: status, body: Array(#"{"code":\#(code),"message":"\#(message)"}"#.utf8)))
    }
}

struct FixedClock: WallClock {
    var now: UnixMillis
    func nowMillis() -> UnixMillis { now }
}

@Suite("Delivery cycle (in-memory store, scripted transport)")
struct DeliveryTests {
    static let now: UnixMillis = 1_795_000_000_000

    static func event(_ id: String, name: String = "purchase") -> NewEvent {
        NewEvent(eventID: id, payload: #"{"event_name":"\#(name)","page":{"location":{"href":"https://shop.example/"}},"user":{"email":"a@example.com"}}"#)
    }

    static func deliverer(_ store: OutboxStore, _ transport: EventTransport, control: DeliveryControl = DeliveryControl(maxInFlight: 4),
                          configure: (inout DeliverySettings) -> Void = { _ in }) -> BatchDeliverer {
        var settings = DeliverySettings()
        configure(&settings)
        return BatchDeliverer(store: store, transport: transport, transformer: Transformer(), settings: settings,
                              target: .init(pixelCode: "PIXEL", testEventCode: nil), owner: "w", control: control,
                              token: { "token" }, clock: FixedClock(now: now), logger: Logger(label: "test"), random: { 0.5 })
    }

    static func states(_ store: InMemoryOutboxStore) throws -> OutboxStats { try store.stats(now: now) }

    @Test("a batch is delivered in one request; skipped and malformed rows settle without being sent")
    func mixed() throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue([Self.event("a"), Self.event("b"), Self.event("c", name: "unknown_thing"),
                               NewEvent(eventID: "d", payload: "not json"), NewEvent(eventID: "e", payload: #"{"page":{}}"#)], now: Self.now)
        let transport = ScriptedTransport { _ in ScriptedTransport.ok() }
        #expect(try Self.deliverer(store, transport).deliverOnce() == 5)
        #expect(transport.requests == [["a", "b"]])
        let stats = try Self.states(store)
        #expect(stats.count(.delivered) == 2 && stats.count(.skipped) == 1 && stats.count(.dead) == 2)
        let dead = try store.deadLetters(limit: 10).map { $0.error ?? "" }
        #expect(dead.contains { $0.contains("not JSON") } && dead.contains { $0.contains("no event_name") })
    }

    @Test("40002 with an index: that event is dead with TikTok's message, the rest resent once")
    func indexedRejection() throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue((0..<1_000).map { Self.event($0 == 637 ? "bad-\($0)" : "ok-\($0)") }, now: Self.now)
        let transport = ScriptedTransport { ids in
            if let i = ids.firstIndex(where: { $0.hasPrefix("bad-") }) { return ScriptedTransport.tiktok(40002, "data.\(i).event_id: rejected") }
            return ScriptedTransport.ok()
        }
        try Self.deliverer(store, transport).deliverOnce()
        #expect(transport.requests.count == 2)
        let stats = try Self.states(store)
        #expect(stats.count(.delivered) == 999 && stats.count(.dead) == 1)
        let dead = try #require(try store.deadLetter("bad-637"))
        #expect(dead.tiktokCode == 40002 && dead.error?.contains("data.637.event_id: rejected") == true)
    }

    @Test("40002 without an index: bisection isolates the bad event in about ten extra requests", arguments: [0, 1, 500, 999])
    func bisection(badIndex: Int) throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue((0..<1_000).map { Self.event($0 == badIndex ? "bad" : "ok-\($0)") }, now: Self.now)
        let transport = ScriptedTransport { ids in
            ids.contains("bad") ? ScriptedTransport.tiktok(40002, "invalid event") : ScriptedTransport.ok()
        }
        try Self.deliverer(store, transport).deliverOnce()
        let stats = try Self.states(store)
        #expect(stats.count(.delivered) == 999 && stats.count(.dead) == 1)
        #expect(try store.deadLetter("bad")?.error?.contains("invalid event") == true)
        #expect(transport.requests.count - 1 <= 20, "extra requests: \(transport.requests.count - 1)")
    }

    @Test("the byte cap splits a claim: what does not fit is released without consuming its attempt")
    func byteCap() throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue((0..<10).map { Self.event("e\($0)") }, now: Self.now)
        let transport = ScriptedTransport { _ in ScriptedTransport.ok() }
        let deliverer = Self.deliverer(store, transport) { $0.maxBatchBytes = 1_200 }
        try deliverer.deliverOnce()
        let first = try #require(transport.requests.first)
        #expect(first.count > 1 && first.count < 10)
        let pending = try store.claim(limit: 10, owner: "x", leaseUntil: Self.now + 1, now: Self.now)
        #expect(pending.count == 10 - first.count && pending.allSatisfy { $0.attempts == 1 })
    }

    @Test("a configuration error pauses, dead-letters nothing and refunds the attempt")
    func configurationError() throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue([Self.event("a"), Self.event("b")], now: Self.now)
        let control = DeliveryControl(maxInFlight: 2)
        let transport = ScriptedTransport { _ in ScriptedTransport.tiktok(40105, "Access token is invalid") }
        try Self.deliverer(store, transport, control: control).deliverOnce()
        let stats = try Self.states(store)
        #expect(stats.count(.pending) == 2 && stats.count(.dead) == 0)
        #expect(control.paused?.contains("40105") == true)
        #expect(control.nextTurn(now: Self.now, waitMillis: 1) == .wait)
        #expect(control.nextTurn(now: Self.now + 30_000, waitMillis: 1) == .probe)
        let rows = try store.claim(limit: 10, owner: "x", leaseUntil: Self.now + 1, now: Self.now)
        #expect(rows.map(\.attempts) == [1, 1], "attempts were not consumed by the paused tries")
    }

    @Test("destinations: each claim takes one destination's rows; a revoked token pauses only its own destination")
    func destinations() throws {
        let store = InMemoryOutboxStore()
        let app = #"{"event_name":"launch_app","context":{"app":{"namespace":"com.a"}}}"#
        _ = try store.enqueue([Self.event("web-1"), Self.event("web-2"), NewEvent(eventID: "app-1", payload: app, destination: "app"),
                               NewEvent(eventID: "web-3", payload: Self.event("x").payload, destination: "main")], now: Self.now)
        let transport = ScriptedTransport { _ in ScriptedTransport.ok() }
        transport.answerByToken["revoked"] = ScriptedTransport.tiktok(40105, "Access token is invalid")
        var appSettings = TransformSettings()
        appSettings.eventSource = .app
        let control = DeliveryControl(maxInFlight: 2, destinations: 2)
        let lanes = [
            BatchDeliverer.Lane(target: .init(name: "main", isDefault: true, sourceIDs: [.web: "CMAIN"], testEventCode: nil), transformer: Transformer(), token: { "good" }),
            BatchDeliverer.Lane(target: .init(name: "app", isDefault: false, sourceIDs: [.app: "7123"], testEventCode: nil),
                                transformer: Transformer(settings: appSettings), token: { "revoked" }),
        ]
        let deliverer = BatchDeliverer(store: store, transport: transport, lanes: lanes, settings: DeliverySettings(), owner: "w", control: control,
                                       clock: FixedClock(now: Self.now), logger: Logger(label: "test"), random: { 0.5 })
        #expect(try deliverer.deliverOnce(destination: 1) == 1)
        #expect(control.paused(destination: 1)?.contains("40105") == true && control.paused(destination: 0) == nil)
        #expect(try deliverer.deliverOnce(destination: 0) == 3, "NULL rows and rows named for the default")
        #expect(transport.requests == [["app-1"], ["web-1", "web-2", "web-3"]])
        #expect(transport.addresses.map(\.source) == ["app", "web"] && transport.addresses.map(\.id) == ["7123", "CMAIN"])
        let stats = try Self.states(store)
        #expect(stats.count(.delivered) == 3 && stats.count(.pending) == 1 && stats.count(.dead) == 0)
        // The paused destination gets probes only; the other one delivers.
        #expect(control.nextTurn(now: Self.now, waitMillis: 1) == .deliver(0))
        control.endTurn(.deliver(0))
        control.claimed(rows: 0, destination: 0)
        #expect(control.nextTurn(now: Self.now + 30_000, waitMillis: 1) == .probe(1))
    }

    @Test("auto: one request per discovered source; an event whose source has no id is dead with the reason")
    func autoSources() throws {
        let store = InMemoryOutboxStore()
        let app = #"{"event_name":"purchase","context":{"app":{"namespace":"com.a"}}}"#
        let offline = #"{"event_name":"purchase","partners":{"tiktok":{"event_source":"offline"}}}"#
        _ = try store.enqueue([Self.event("w1"), NewEvent(eventID: "a1", payload: app), Self.event("w2"), NewEvent(eventID: "o1", payload: offline)], now: Self.now)
        let transport = ScriptedTransport { _ in ScriptedTransport.ok() }
        var auto = TransformSettings()
        auto.eventSource = .auto
        let deliverer = BatchDeliverer(store: store, transport: transport, transformer: Transformer(settings: auto), settings: DeliverySettings(),
                                       target: .init(sourceIDs: [.web: "CWEB", .app: "7123"], testEventCode: nil), owner: "w",
                                       control: DeliveryControl(maxInFlight: 1), token: { "t" }, clock: FixedClock(now: Self.now), logger: Logger(label: "test"))
        #expect(try deliverer.deliverOnce() == 4)
        #expect(transport.requests == [["w1", "w2"], ["a1"]] && transport.addresses.map(\.source) == ["web", "app"])
        let dead = try #require(try store.deadLetter("o1"))
        #expect(dead.error?.contains("has no offline event set ID") == true)
    }

    @Test("idle: once a claim finds nothing, one poll per linger; a worker that just had work goes on; finding rows wakes the rest")
    func idleSpacing() {
        let control = DeliveryControl(maxInFlight: 4, lingerMillis: 200)
        #expect(control.nextTurn(now: Self.now, waitMillis: 1) == .deliver)
        control.endTurn(.deliver)
        control.claimed(rows: 0)  // the outbox looked empty
        let started = Date()
        #expect(control.nextTurn(now: Self.now, waitMillis: 50) == .wait, "no second poll within the linger")
        #expect(control.nextTurn(now: Self.now, waitMillis: 1, hadWork: true) == .deliver, "a worker whose last claim found rows goes on")
        control.endTurn(.deliver)
        #expect(control.nextTurn(now: Self.now, waitMillis: 1_000) == .deliver, "the next poll once the linger passed")
        #expect(Date().timeIntervalSince(started) >= 0.15)
        control.endTurn(.deliver)
        #expect(control.nextTurn(now: Self.now, waitMillis: 20) == .wait, "that poll claimed the next linger")
        control.claimed(rows: 7)  // a poll found rows: everyone may claim at once
        #expect(control.nextTurn(now: Self.now, waitMillis: 1) == .deliver)
        #expect(control.nextTurn(now: Self.now, waitMillis: 1) == .deliver)
    }

    @Test("transient failures retry with backoff; the last attempt dead-letters with the last error")
    func retries() throws {
        let store = InMemoryOutboxStore()
        _ = try store.enqueue([Self.event("a")], now: Self.now)
        let transport = ScriptedTransport { _ in .success(HTTPResponse(status: 503, body: Array("unavailable".utf8))) }
        let deliverer = Self.deliverer(store, transport) { $0.retry.maxAttempts = 2 }
        try deliverer.deliverOnce()
        #expect(try Self.states(store).count(.pending) == 1)
        #expect(try deliverer.deliverOnce() == 0, "not due before its backoff")
        let later = Self.deliverer(store, transport) { $0.retry.maxAttempts = 2 }
        _ = try store.claim(limit: 0, owner: "w", leaseUntil: 0, now: Self.now)
        let rows = try store.claim(limit: 1, owner: "w", leaseUntil: Self.now + 600_000, now: Self.now + 600_000)
        #expect(rows.count == 1)
        try store.release(ids: rows.map(\.id), owner: "w", now: Self.now)
        try later.deliverOnce()
        let dead = try #require(try store.deadLetter("a"))
        #expect(dead.error?.hasPrefix("gave up after 2 attempts: HTTP 503") == true)
    }

    @Test("a timeout after the body was sent starts the 48-hour window; near its end the row is dead as ambiguous")
    func ambiguous() throws {
        var policy = RetryPolicy()
        policy.maxAgeMillis = 7 * 86_400_000
        let sent: UnixMillis = 0
        #expect(policy.decide(attempts: 3, createdAt: 0, firstSentAt: sent, retryAfterMillis: nil, lastError: "timed out",
                              now: 40 * 3_600_000, random: 0.5) == .retry(at: 40 * 3_600_000 + 2_000))
        guard case .dead(let reason) = policy.decide(attempts: 3, createdAt: 0, firstSentAt: sent, retryAfterMillis: nil,
                                                     lastError: "timed out", now: 46 * 3_600_000, random: 0) else {
            Issue.record("expected ambiguous delivery"); return
        }
        #expect(reason.hasPrefix("ambiguous delivery"))
        #expect(policy.decide(attempts: 3, createdAt: 0, firstSentAt: nil, retryAfterMillis: nil, lastError: "refused",
                              now: 46 * 3_600_000, random: 0) == .retry(at: 46 * 3_600_000))
    }
}

@Suite("Retry policy and concurrency limit")
struct PolicyTests {
    @Test("ceilings double from the base up to the cap; jitter stays under the ceiling; Retry-After is a floor")
    func schedule() {
        let policy = RetryPolicy()
        #expect((1...12).map { policy.ceilingMillis(afterAttempts: $0) } ==
                [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 600_000, 600_000])
        #expect(policy.ceilingMillis(afterAttempts: 500) == 600_000)
        #expect(policy.decide(attempts: 4, createdAt: 0, firstSentAt: nil, retryAfterMillis: nil, lastError: "", now: 10, random: 0.999_999_9) == .retry(at: 10 + 7_999))
        #expect(policy.decide(attempts: 1, createdAt: 0, firstSentAt: nil, retryAfterMillis: 5_000, lastError: "", now: 10, random: 0.1) == .retry(at: 5_010))
        guard case .dead(let reason) = policy.decide(attempts: 2, createdAt: 0, firstSentAt: nil, retryAfterMillis: nil, lastError: "HTTP 500",
                                                     now: 3 * 86_400_000, random: 0) else { Issue.record("expected dead by age"); return }
        #expect(reason.contains("older than 3d") && reason.hasSuffix("HTTP 500"))
    }

    @Test("rate limiting halves the limit; successes add it back one per round")
    func aimd() {
        var limit = ConcurrencyLimit(maximum: 8)
        limit.rateLimited()
        #expect(limit.current == 4)
        limit.rateLimited(); limit.rateLimited(); limit.rateLimited()
        #expect(limit.current == 1)
        limit.succeeded()
        #expect(limit.current == 2, "one success at limit 1 is a full round")
        for _ in 0..<4 { limit.succeeded() }
        #expect(limit.current == 3, "2 → 3 takes about two rounds of two")
        for _ in 0..<100 { limit.succeeded() }
        #expect(limit.current == 8)
    }
}

@Suite("--until-drained: when to count the backlog again")
struct DrainCheckTests {
    @Test("half the time the rest takes at the measured rate, between 20 ms and 1 s")
    func followsTheRate() {
        // No earlier count: the 50,000/s guess (200,000 rows: 2 s, half capped to 1 s).
        #expect(Daemon.drainCheckDelay(unfinished: 200_000, now: 0, previous: nil) == 1_000)
        #expect(Daemon.drainCheckDelay(unfinished: 20_000, now: 0, previous: nil) == 200)
        // 90,000 rows fell in 1 s: 110,000 left take ~1.22 s, looked at again in ~611 ms.
        #expect(Daemon.drainCheckDelay(unfinished: 110_000, now: 1_000, previous: (0, 200_000)) == 611)
        // Near the end: 4,000 rows at 90,000/s take ~44 ms, looked at again in 22 ms.
        #expect(Daemon.drainCheckDelay(unfinished: 4_000, now: 2_000, previous: (1_900, 13_000)) == 22)
        // Then the floor: at most ~20 ms between the drain and the exit.
        #expect(Daemon.drainCheckDelay(unfinished: 500, now: 2_000, previous: (1_900, 13_000)) == 20)
        // A backlog that grew (producers outpace the drain) or a clock that stood still: the guess.
        #expect(Daemon.drainCheckDelay(unfinished: 60_000, now: 1_000, previous: (0, 50_000)) == 600)
        #expect(Daemon.drainCheckDelay(unfinished: 60_000, now: 0, previous: (0, 70_000)) == 600)
        // A very slow fall: never more than 1 s.
        #expect(Daemon.drainCheckDelay(unfinished: 1_000_000, now: 1_000, previous: (0, 1_000_001)) == 1_000)
        #expect(Daemon.drainCheckDelay(unfinished: 0, now: 5, previous: (0, .max)) == 20)
    }
}
