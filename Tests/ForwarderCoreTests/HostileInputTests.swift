import ForwarderCore
import Testing

/// Values from producers, operators, configuration and peers that once crashed the daemon or
/// leaked a secret. Each must give a clear outcome and never trap.
@Suite("Hostile input")
struct HostileInputTests {
    static let now: Int64 = 1_795_000_000_000

    @Test("event times that are numbers beyond any date never trap: they are not a time", arguments: [
        #""1000000000000000000000000""#, "1e24", "1000000000000000000000000", "9223372036854775807", "9223372036854775808",
        "1.8e308", #""99999999999999999999.5""#, "10000000000000000",
    ])
    func hugeEventTimes(_ literal: String) throws {
        let value = try JSONParser.parse(literal)
        #expect(EventTime.seconds(from: value) == nil)
        let payload = #"{"event_name":"purchase","url":"https://s.example/","context":{"event_timestamp":\#(literal)}}"#
        let outcome = Transformer(settings: TransformSettings()).transform(payload: payload, eventID: "e", insertedAtMillis: Self.now - 1_000, nowMillis: Self.now)
        guard case .event(let event, let warnings) = outcome else { Issue.record("\(outcome)"); return }
        #expect(event.eventTime == Self.now / 1000 - 1, "falls back to the insert time")
        #expect(!warnings.isEmpty)
    }

    @Test("insert times at Int64's limits never trap the transform or the retry policy", arguments: [Int64.min, Int64.max, -1, 0])
    func extremeInsertTimes(_ createdAt: Int64) {
        let outcome = Transformer(settings: TransformSettings()).transform(payload: #"{"event_name":"purchase","url":"https://s.example/"}"#,
                                                                              eventID: "e", insertedAtMillis: createdAt, nowMillis: Self.now)
        switch outcome {
        case .event, .rejected: break
        case .skipped: Issue.record("\(outcome)")
        }
        let policy = RetryPolicy()
        for firstSent in [nil, Int64.min, Int64.max] as [Int64?] {
            _ = policy.decide(attempts: 1, createdAt: createdAt, firstSentAt: firstSent, retryAfterMillis: .max, lastError: "x", now: Self.now, random: .nan)
            _ = policy.decide(attempts: .max, createdAt: createdAt, firstSentAt: firstSent, retryAfterMillis: nil, lastError: "x", now: .max, random: 1)
        }
    }

    @Test("saturating arithmetic and checked conversions")
    func arithmetic() {
        #expect(Int64.max.adding(saturating: 1) == .max)
        #expect(Int64.min.adding(saturating: -1) == .min)
        #expect(Int64.min.subtracting(saturating: 1) == .min)
        #expect(Int64(0).subtracting(saturating: .min) == .max)
        #expect(Int64(5).subtracting(saturating: 3) == 2)
        #expect(Int64.max.multiplied(saturating: 2) == .max && Int64.max.multiplied(saturating: -2) == .min)
        #expect(Int64(checked: 1e24) == nil && Int64(checked: .nan) == nil && Int64(checked: -.infinity) == nil)
        #expect(Int64(checked: 9_223_372_036_854_775_808.0) == nil)
        #expect(Int64(checked: -9_223_372_036_854_775_808.0) == .min)
        #expect(Int64(checked: 42.9) == 42)
    }

    @Test("durations are bounded: huge settings are refused, not trapped on", arguments: [
        "99999999999999999999d", "9223372036854775807ms", "106751991167d", "101y", "36501d", "1000000000000w",
    ])
    func hugeDurations(_ text: String) {
        #expect(Durations.parseMillis(text) == nil)
    }

    @Test("durations up to 100 years parse, and any millisecond count formats")
    func durationBounds() {
        let hundredYears: Int64 = 3_153_600_000_000
        #expect(Durations.parseMillis("36500d") == hundredYears)
        #expect(Durations.parseMillis("36500d1ms") == nil)
        for millis in [Int64.min, -1, 0, .max] { _ = Durations.format(millis: millis) }
    }

    @Test("control characters are escaped, everything else kept", arguments: [
        ("ord-1\u{1B}[2J", "ord-1\\u{1B}[2J"), ("a\rb\nc", "a\\u{D}b\\u{A}c"), ("x\u{9B}31m", "x\\u{9B}31m"),
        ("plain é 日本", "plain é 日本"), ("\u{2028}", "\\u{2028}"), ("del\u{7F}", "del\\u{7F}"),
    ])
    func controls(_ input: String, _ expected: String) {
        #expect(SafeText.escapingControls(input) == expected)
    }

    @Test("a token echoed back by a peer is redacted from every outcome text")
    func redaction() {
        let token = "7e1f0c-secret-token"
        let body = #"{"code":50000,"message":"upstream said: headers were Access-Token: \#(token)"}"#
        let outcomes = [
            ResponseClassifier.classify(HTTPResponse(status: 400, body: Array("bad request, Access-Token: \(token)".utf8))),
            ResponseClassifier.classify(HTTPResponse(status: 200, body: Array(body.utf8))),
            ResponseClassifier.classify(HTTPResponse(status: 200, body: Array(#"{"code":40002,"message":"data.1: \#(token)"}"#.utf8))),
            ResponseClassifier.classify(HTTPResponse(status: 200, body: Array(#"{"code":40105,"message":"\#(token)"}"#.utf8))),
            ResponseClassifier.classify(HTTPResponse(status: 418, body: Array("teapot \(token) \(token)".utf8))),
        ]
        for outcome in outcomes {
            #expect("\(outcome)".contains(token), "the test's premise: the raw outcome holds the token")
            let redacted = outcome.redacting(token)
            #expect(!"\(redacted)".contains(token), "\(redacted)")
            #expect("\(redacted)".contains("[redacted]"))
        }
    }

    @Test("TLS verification failures pause delivery; an oversized response is not retried as if TikTok were down")
    func transportKinds() {
        let tls = ResponseClassifier.classify(TransportFailure(kind: .tlsVerification, bodySent: false, detail: "SSL peer certificate was not OK"))
        guard case .configurationError(let reason) = tls else { Issue.record("\(tls)"); return }
        #expect(reason.contains("TLS verification"))
        let large = ResponseClassifier.classify(TransportFailure(kind: .responseTooLarge, bodySent: true, detail: "over 262144 bytes"))
        guard case .unknown(_, let reached) = large else { Issue.record("\(large)"); return }
        #expect(reached)
    }
}
