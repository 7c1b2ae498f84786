import ForwarderCore
import Testing

private func response(_ status: Int, _ body: String, headers: [String: String] = [:]) -> Result<HTTPResponse, TransportFailure> {
    .success(HTTPResponse(status: status, headers: headers, body: Array(body.utf8)))
}

@Suite("Response classification")
struct ClassificationTests {
    @Test("TikTok's codes decide, never HTTP 200 alone")
    func codes() {
        #expect(ResponseClassifier.classify(response(200, #"{"code":0,"message":"OK","request_id":"r","data":{}}"#)) == .delivered)
        guard case .configurationError(let permission) = ResponseClassifier.classify(response(200, #"{"code":40001,"message":"no permission"}"#)) else {
            Issue.record("40001"); return
        }
        #expect(permission.contains("40001"))
        guard case .configurationError(let token) = ResponseClassifier.classify(response(200, #"{"code":40105,"message":"token revoked"}"#)) else {
            Issue.record("40105"); return
        }
        #expect(token.contains("40105") && token.contains("token"))
        #expect(ResponseClassifier.classify(response(200, #"{"code":40100,"message":"too many requests"}"#))
                == .rateLimited(reason: "HTTP 200, code 40100: too many requests", retryAfterMillis: nil))
        #expect(ResponseClassifier.classify(response(200, #"{"code":40002,"message":"data.3.event_id: not a valid string"}"#))
                == .invalidEvent(index: 3, message: "HTTP 200, code 40002: data.3.event_id: not a valid string"))
        #expect(ResponseClassifier.classify(response(200, #"{"code":40002,"message":"Invalid parameter: currency"}"#))
                == .invalidEvent(index: nil, message: "HTTP 200, code 40002: Invalid parameter: currency"))
        #expect(ResponseClassifier.classify(response(200, #"{"code":51000,"message":"internal"}"#))
                == .retry(reason: "HTTP 200, code 51000: internal", retryAfterMillis: nil, mayHaveReachedTikTok: true))
        guard case .unknown(let reason, true) = ResponseClassifier.classify(response(200, #"{"code":41234,"message":"new thing"}"#)) else {
            Issue.record("unknown code"); return
        }
        #expect(reason.contains("41234"))
        // HTTP 200 with no code at all is not a success.
        guard case .unknown = ResponseClassifier.classify(response(200, "<html>proxy page</html>")) else { Issue.record("html 200"); return }
    }

    @Test("HTTP statuses decide when the body has no code")
    func statuses() {
        #expect(ResponseClassifier.classify(response(429, "", headers: ["retry-after": "2"]))
                == .rateLimited(reason: "HTTP 429", retryAfterMillis: 2_000))
        #expect(ResponseClassifier.classify(response(500, "oops")) == .retry(reason: "HTTP 500", retryAfterMillis: nil, mayHaveReachedTikTok: true))
        #expect(ResponseClassifier.classify(response(503, "", headers: ["retry-after": "30"])) == .retry(reason: "HTTP 503", retryAfterMillis: 30_000, mayHaveReachedTikTok: true))
        guard case .configurationError = ResponseClassifier.classify(response(401, "")) else { Issue.record("401"); return }
        guard case .configurationError = ResponseClassifier.classify(response(403, "")) else { Issue.record("403"); return }
        // A wrong URL is a configuration error (pause), not days of retries.
        guard case .configurationError(let reason) = ResponseClassifier.classify(response(404, "nope")) else { Issue.record("404"); return }
        #expect(reason.contains("base URL"))
        guard case .configurationError = ResponseClassifier.classify(response(405, "")) else { Issue.record("405"); return }
        guard case .unknown = ResponseClassifier.classify(response(418, "teapot")) else { Issue.record("418"); return }
    }

    @Test("transport failures: only a request whose body went out may have reached TikTok")
    func transportFailures() {
        #expect(ResponseClassifier.classify(.failure(TransportFailure(kind: .connect, bodySent: false, detail: "refused")))
                == .retry(reason: "connection failed: refused", retryAfterMillis: nil, mayHaveReachedTikTok: false))
        #expect(ResponseClassifier.classify(.failure(TransportFailure(kind: .timeout, bodySent: true, detail: "t")))
                == .retry(reason: "timed out: t", retryAfterMillis: nil, mayHaveReachedTikTok: true))
        #expect(ResponseClassifier.classify(.failure(TransportFailure(kind: .timeout, bodySent: false, detail: "t")))
                == .retry(reason: "timed out: t", retryAfterMillis: nil, mayHaveReachedTikTok: false))
        #expect(ResponseClassifier.classify(.failure(TransportFailure(kind: .reset, bodySent: true, detail: "r")))
                == .retry(reason: "connection reset: r", retryAfterMillis: nil, mayHaveReachedTikTok: true))
    }

    @Test("the offending index of a 40002 message", arguments: [
        ("data.3.event_id: not a valid string", 3), ("data[12].user.email invalid", 12), ("Invalid data.0", 0),
        ("metadata.5.x", nil), ("no index here", nil), ("data.event_id", nil),
    ] as [(String, Int?)])
    func offendingIndex(message: String, index: Int?) {
        #expect(ResponseClassifier.offendingIndex(in: message) == index)
    }
}

@Suite("Track request validation (the sandbox's rules)")
struct ValidatorTests {
    static let good = #"{"event":"Purchase","event_time":1795000000,"event_id":"e1","user":{"email":"836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"},"page":{"url":"https://s.example/"},"properties":{"currency":"EUR","value":1.5,"contents":[{"content_id":"A","price":1,"quantity":2}]}}"#

    static func request(_ events: [String], source: String = "web", pixel: String = #""PX""#) -> String {
        #"{"event_source":"\#(source)","event_source_id":\#(pixel),"data":[\#(events.joined(separator: ","))]}"#
    }

    @Test("a valid request passes")
    func valid() throws {
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request([Self.good, Self.good]))) == nil)
    }

    @Test("each rule rejects what it should, naming data.N.field", arguments: [
        (#""event":"Purchase""#, #""event":"""#, "data.1.event: not a valid string"),
        (#""event_time":1795000000"#, #""event_time":1795000000123"#, "data.1.event_time: must be an integer Unix time in seconds"),
        (#""event_time":1795000000"#, #""event_time":"1795000000""#, "data.1.event_time: must be an integer Unix time in seconds"),
        (#""event_id":"e1""#, #""event_id":1"#, "data.1.event_id: not a valid string"),
        (#""email":"836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f""#, #""email":"john@example.com""#, "data.1.user.email: must be a SHA-256 hash (64 lowercase hex characters)"),
        (#""email":"836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f""#, #""email":"836F82DB99121B3481011F16B49DFA5FBC714A0D1B1B9F784A1EBBBF5B39577F""#, "data.1.user.email: must be a SHA-256 hash (64 lowercase hex characters)"),
        (#""currency":"EUR""#, #""currency":"XYZ""#, "data.1.properties.currency: not a supported currency"),
        (#""value":1.5"#, #""value":"1.5""#, "data.1.properties.value: not a valid number"),
        (#""content_id":"A""#, #""content_id":7"#, "data.1.properties.contents.0.content_id: not a valid string"),
        (#""page":{"url":"https://s.example/"}"#, #""page":{}"#, "data.1.page.url: required for web events"),
    ])
    func rules(original: String, replacement: String, problem: String) throws {
        let bad = Self.good.replacingOccurrences(of: original, with: replacement)
        #expect(bad != Self.good)
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request([Self.good, bad]))) == problem)
    }

    @Test("request-level rules")
    func requestRules() throws {
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request([]))) == "data: must contain at least 1 event")
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request(Array(repeating: Self.good, count: 1_001)))) == "data: must contain at most 1000 events")
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request([Self.good], source: "tv"))) == "event_source: must be one of web, app, offline, crm")
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(Self.request([Self.good], pixel: "12"))) == "event_source_id: not a valid string")
    }

    @Test("count-only mode counts data elements without parsing them")
    func countEvents() {
        func count(_ s: String) -> Int { Array(s.utf8).withUnsafeBytes { TrackRequestValidator.countEvents($0) } }
        #expect(count(Self.request([Self.good, Self.good, Self.good])) == 3)
        #expect(count(Self.request([])) == 0)
        #expect(count(#"{"event_source":"web","x":{"data":[1,2]},"data":[{"a":"],[,"},{"b":[1,2,3]}]}"#) == 2)
        #expect(count(#"{"data":[ ]}"#) == 0)
    }
}
