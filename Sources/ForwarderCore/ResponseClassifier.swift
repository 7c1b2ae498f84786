/// An HTTP response as the transport saw it.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Header names lowercased.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a request got no HTTP response.
public struct TransportFailure: Error, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// No connection was made (refused, DNS, connect timeout, TLS handshake): nothing was sent.
        case connect
        /// The total timeout passed before a response arrived.
        case timeout
        /// The connection was closed or reset before a complete response arrived.
        case reset
        /// The server's TLS certificate could not be verified (unknown CA, wrong host name,
        /// expired): an infrastructure fault (a proxy intercepting TLS, a missing CA bundle),
        /// not something a retry of these events can fix. Nothing was sent.
        case tlsVerification
        /// The response was larger than the transport accepts (TikTok's answers are a few KB).
        case responseTooLarge
        /// Anything else libcurl reports.
        case other
    }

    public var kind: Kind
    /// The whole request body was handed to the network: TikTok may have processed it.
    public var bodySent: Bool
    /// Human-readable detail (libcurl's message); never contains the token or the body.
    public var detail: String

    public init(kind: Kind, bodySent: Bool, detail: String) {
        self.kind = kind
        self.bodySent = bodySent
        self.detail = detail
    }
}

/// What the daemon should do with a batch after one request.
public enum DeliveryOutcome: Sendable, Equatable {
    /// TikTok accepted every event (`code` 0).
    case delivered
    /// A transient failure: retry the batch later (no earlier than `retryAfterMillis` if given).
    case retry(reason: String, retryAfterMillis: Int64?, mayHaveReachedTikTok: Bool)
    /// TikTok asked us to slow down (40100 or HTTP 429): retry, and lower the concurrency.
    case rateLimited(reason: String, retryAfterMillis: Int64?)
    /// TikTok rejected the batch for one invalid event (40002). `index` is the offending event
    /// when the message names it; the rest of the batch is fine.
    case invalidEvent(index: Int?, message: String)
    /// The pixel or token is wrong (40001, 40105, HTTP 401/403): pause, consume no attempts.
    case configurationError(reason: String)
    /// A response we do not understand: retry a bounded number of times, then dead-letter
    /// with the full response.
    case unknown(reason: String, mayHaveReachedTikTok: Bool)
}

extension DeliveryOutcome {
    /// The same outcome with `secret` removed from every text in it: a peer may echo the
    /// request's headers (the access token) in an error body, and these texts are logged,
    /// stored as `last_error` and shown by `status` and `dead show`.
    public func redacting(_ secret: String) -> DeliveryOutcome {
        func r(_ text: String) -> String { SafeText.redacting(secret, in: text) }
        switch self {
        case .delivered: return .delivered
        case .retry(let reason, let after, let reached): return .retry(reason: r(reason), retryAfterMillis: after, mayHaveReachedTikTok: reached)
        case .rateLimited(let reason, let after): return .rateLimited(reason: r(reason), retryAfterMillis: after)
        case .invalidEvent(let index, let message): return .invalidEvent(index: index, message: r(message))
        case .configurationError(let reason): return .configurationError(reason: r(reason))
        case .unknown(let reason, let reached): return .unknown(reason: r(reason), mayHaveReachedTikTok: reached)
        }
    }
}

/// Decides what a TikTok Events API response means. Pure: a table of cases is its test.
///
/// TikTok answers API errors with HTTP 200 and a non-zero `code`, so the body's `code` is
/// read first; the HTTP status decides only when the body has none.
public enum ResponseClassifier {
    public static func classify(_ result: Result<HTTPResponse, TransportFailure>) -> DeliveryOutcome {
        switch result {
        case .failure(let failure):
            return classify(failure)
        case .success(let response):
            return classify(response)
        }
    }

    public static func classify(_ failure: TransportFailure) -> DeliveryOutcome {
        switch failure.kind {
        case .connect:
            return .retry(reason: "connection failed: \(failure.detail)", retryAfterMillis: nil, mayHaveReachedTikTok: false)
        case .timeout:
            return .retry(reason: "timed out: \(failure.detail)", retryAfterMillis: nil, mayHaveReachedTikTok: failure.bodySent)
        case .reset:
            return .retry(reason: "connection reset: \(failure.detail)", retryAfterMillis: nil, mayHaveReachedTikTok: failure.bodySent)
        case .tlsVerification:
            return .configurationError(reason: "TLS verification of the endpoint failed (\(failure.detail)): check the endpoint's certificate, the system CA bundle (ca-certificates) and any TLS-intercepting proxy")
        case .responseTooLarge:
            return .unknown(reason: "response rejected: \(failure.detail)", mayHaveReachedTikTok: failure.bodySent)
        case .other:
            return .retry(reason: "transport error: \(failure.detail)", retryAfterMillis: nil, mayHaveReachedTikTok: failure.bodySent)
        }
    }

    public static func classify(_ response: HTTPResponse) -> DeliveryOutcome {
        classifyDetailed(.success(response)).outcome
    }

    /// The outcome with the HTTP status and TikTok `code` it was decided on (for the row's
    /// record and the metrics), parsing the body once.
    public static func classifyDetailed(_ result: Result<HTTPResponse, TransportFailure>) -> (outcome: DeliveryOutcome, httpStatus: Int?, tiktokCode: Int?) {
        switch result {
        case .failure(let failure):
            return (classify(failure), nil, nil)
        case .success(let response):
            let body = try? JSONParser.parse(response.body)
            let code = body?["code"].flatMap { Normalise.integer($0) }.map(Int.init)
            return (classify(response, code: code, message: body?["message"]?.stringValue), response.status, code)
        }
    }

    static func classify(_ response: HTTPResponse, code: Int?, message rawMessage: String?) -> DeliveryOutcome {
        let retryAfter = response.headers["retry-after"].flatMap(parseRetryAfter)
        let message = rawMessage.map { boundedError($0, limit: 500) } ?? ""
        let described = "HTTP \(response.status)" + (code.map { ", code \($0)" } ?? "") + (message.isEmpty ? "" : ": \(message)")

        if let code {
            switch code {
            case 0 where (200..<300).contains(response.status):
                return .delivered
            case 40002:
                return .invalidEvent(index: offendingIndex(in: message), message: described)
            case 40001:
                return .configurationError(reason: "TikTok says this access token has no permission on the pixel (40001): check the pixel code and the token's pixel. \(message)")
            case 40105:
                return .configurationError(reason: "TikTok rejected the access token (40105: wrong or revoked): put a valid token in the token file. \(message)")
            case 40100:
                return .rateLimited(reason: described, retryAfterMillis: retryAfter)
            case 50000..<60000:
                return .retry(reason: described, retryAfterMillis: retryAfter, mayHaveReachedTikTok: true)
            default:
                break
            }
        }
        switch response.status {
        case 429:
            return .rateLimited(reason: described, retryAfterMillis: retryAfter)
        case 401, 403:
            return .configurationError(reason: "TikTok refused the request (\(described)): check the access token and the pixel code")
        case 404, 405:
            // Not TikTok's answer for an event: the URL is wrong (a doubled path, a typo). Retrying
            // for days would not help; pausing says so at once.
            return .configurationError(reason: "the endpoint answered \(described): the URL is wrong; the endpoint setting is the base URL only (https://business-api.tiktok.com), the daemon adds /open_api/v1.3/event/track/")
        case 500..<600:
            return .retry(reason: described, retryAfterMillis: retryAfter, mayHaveReachedTikTok: true)
        case 408:
            return .retry(reason: described, retryAfterMillis: retryAfter, mayHaveReachedTikTok: false)
        default:
            let bodyText = String(decoding: response.body.prefix(600), as: UTF8.self)
            return .unknown(reason: "unexpected response: HTTP \(response.status): \(bodyText)", mayHaveReachedTikTok: true)
        }
    }

    /// `Retry-After` in seconds (the HTTP-date form is rare from API gateways and is ignored).
    static func parseRetryAfter(_ value: String) -> Int64? {
        guard let seconds = Int64(value.trimmingWhitespace()), seconds >= 0, seconds < 86_400 else { return nil }
        return seconds * 1000
    }

    /// The event index a 40002 message names: `data.3.event_id …`, `data[3]`, `data.3`.
    public static func offendingIndex(in message: String) -> Int? {
        let bytes = Array(message.utf8)
        let key = Array("data".utf8)
        var i = 0
        while i + key.count < bytes.count {
            if bytes[i..<(i + key.count)].elementsEqual(key), i == 0 || !isWordByte(bytes[i - 1]) {
                var j = i + key.count
                if j < bytes.count, bytes[j] == UInt8(ascii: ".") || bytes[j] == UInt8(ascii: "[") {
                    j += 1
                    let start = j
                    while j < bytes.count, Normalise.isDigit(bytes[j]) { j += 1 }
                    if j > start, j - start < 6 { return Int(String(decoding: bytes[start..<j], as: UTF8.self)) }
                }
            }
            i += 1
        }
        return nil
    }

    private static func isWordByte(_ b: UInt8) -> Bool {
        Normalise.isDigit(b) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b | 0x20) || b == UInt8(ascii: "_")
    }
}
