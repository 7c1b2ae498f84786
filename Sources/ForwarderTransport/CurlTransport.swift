import CCurl
import ForwarderCore

/// The HTTP transport over libcurl: one easy handle, reused for every request, so the
/// connection is kept alive (a new handle per request measured ~6x slower even on loopback).
///
/// Blocking and not thread-safe: each delivery worker owns one, on its own thread. TLS peer
/// and host verification stay on (libcurl's default; there is no switch to turn them off).
/// Proxies come from libcurl's standard environment variables (`https_proxy`, `no_proxy`…),
/// for `https` endpoints only: a plain-`http` endpoint (loopback only) never goes through a
/// proxy, which would see the token in clear. Responses are taken uncompressed and capped at
/// ``Configuration/maxResponseBytes``. The access token travels only in the `Access-Token`
/// header and is never logged.
public final class CurlTransport: EventTransport {
    public struct Configuration: Sendable {
        /// The full URL of the track endpoint.
        public var url: String
        public var connectTimeoutMillis: Int = 5_000
        public var totalTimeoutMillis: Int = 30_000
        public var userAgent: String = ForwarderVersion.userAgent
        /// The largest response body accepted. TikTok's answers are a few KB; a larger body
        /// (a misbehaving proxy, a hostile peer) ends the transfer as a classified failure
        /// instead of growing the daemon's memory.
        public var maxResponseBytes: Int = 256 * 1024

        public init(url: String, connectTimeoutMillis: Int = 5_000, totalTimeoutMillis: Int = 30_000) {
            self.url = url
            self.connectTimeoutMillis = connectTimeoutMillis
            self.totalTimeoutMillis = totalTimeoutMillis
        }

        /// The track endpoint under a base URL (`https://business-api.tiktok.com`).
        public static func trackURL(base: String) -> String {
            var base = base
            while base.hasSuffix("/") { base.removeLast() }
            return base + "/open_api/v1.3/event/track/"
        }
    }

    public let configuration: Configuration
    private let handle: UnsafeMutableRawPointer
    private let sink = ResponseSink()
    /// New connections opened so far (1 for a kept-alive connection, whatever the request count).
    public private(set) var connectionsOpened = 0

    private static let globalInit: Void = {
        // Must run once before any thread uses libcurl; not thread-safe itself.
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }()

    public init(configuration: Configuration) throws {
        _ = Self.globalInit
        guard let handle = curl_easy_init() else { throw TransportSetupError(message: "libcurl could not create a handle") }
        self.handle = handle
        self.configuration = configuration
        try setup()
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    public static var libcurlVersion: String { String(cString: ccurl_version_string()) }

    private func setup() throws {
        try check(ccurl_setopt_str(handle, CURLOPT_URL, configuration.url))
        try check(ccurl_setopt_long(handle, CURLOPT_POST, 1))
        try check(ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))  // timeouts without SIGALRM: required in threads
        try check(ccurl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1))
        try check(ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, configuration.connectTimeoutMillis))
        try check(ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, configuration.totalTimeoutMillis))
        try check(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
        try check(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        try check(ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        try check(ccurl_setopt_str(handle, CURLOPT_USERAGENT, configuration.userAgent))
        // No CURLOPT_ACCEPT_ENCODING: libcurl then asks for and decodes nothing, so a small
        // compressed body cannot inflate to gigabytes in memory.
        if configuration.url.lowercased().hasPrefix("http://") {
            try check(ccurl_setopt_str(handle, CURLOPT_NOPROXY, "*"))
        }
        try check(ccurl_setopt_off(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(configuration.maxResponseBytes)))
        sink.limit = configuration.maxResponseBytes
        try check(ccurl_setopt_write_cb(handle, { pointer, size, count, context in
            let sink = Unmanaged<ResponseSink>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            guard sink.body.count + total <= sink.limit else {
                sink.tooLarge = true
                return 0  // libcurl aborts the transfer with CURLE_WRITE_ERROR
            }
            if let pointer { sink.body.append(contentsOf: UnsafeRawBufferPointer(start: pointer, count: total)) }
            return total
        }))
        try check(ccurl_setopt_header_cb(handle, { pointer, size, count, context in
            let sink = Unmanaged<ResponseSink>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            if let pointer {
                let line = String(decoding: UnsafeRawBufferPointer(start: pointer, count: total), as: UTF8.self)
                if line.hasPrefix("HTTP/") { sink.headers.removeAll() }  // a new response (after 100 Continue)
                if let colon = line.firstIndex(of: ":"), sink.headers.count < 64 {
                    sink.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingWhitespace()
                }
            }
            return total
        }))
        let context = Unmanaged.passUnretained(sink).toOpaque()
        try check(ccurl_setopt_ptr(handle, CURLOPT_WRITEDATA, context))
        try check(ccurl_setopt_ptr(handle, CURLOPT_HEADERDATA, context))
    }

    public func post(body: UnsafeBufferPointer<UInt8>, accessToken: String) -> Result<HTTPResponse, TransportFailure> {
        sink.body.removeAll(keepingCapacity: sink.body.capacity <= 64 * 1024)
        sink.headers.removeAll(keepingCapacity: true)
        sink.tooLarge = false
        // The header list holds the token only for the duration of this call.
        var headers: UnsafeMutablePointer<curl_slist>?
        headers = curl_slist_append(headers, "Content-Type: application/json")
        headers = curl_slist_append(headers, "Access-Token: " + accessToken)
        headers = curl_slist_append(headers, "Expect:")  // no 100-continue wait on large bodies
        defer { curl_slist_free_all(headers) }
        // CURLOPT_POSTFIELDS does not copy: the body must outlive curl_easy_perform, which it does here.
        let raw = UnsafeRawBufferPointer(body)
        _ = ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        _ = ccurl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(raw.count))
        _ = ccurl_setopt_ptr(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
        let code = curl_easy_perform(handle)
        _ = ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)
        _ = ccurl_setopt_ptr(handle, CURLOPT_POSTFIELDS, nil)

        var connects = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &connects)
        connectionsOpened += connects
        var uploaded: curl_off_t = 0
        _ = ccurl_getinfo_off(handle, CURLINFO_SIZE_UPLOAD_T, &uploaded)
        let bodySent = uploaded >= body.count

        guard code == CURLE_OK else {
            var detail = String(cString: curl_easy_strerror(code))
            let kind: TransportFailure.Kind
            switch code {
            case _ where sink.tooLarge, CURLE_FILESIZE_EXCEEDED:
                kind = .responseTooLarge
                detail = "the response body is larger than \(configuration.maxResponseBytes) bytes"
            case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_ISSUER_ERROR,
                 CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
                kind = .tlsVerification
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SSL_CONNECT_ERROR:
                kind = .connect
            case CURLE_OPERATION_TIMEDOUT:
                var connectTime: Double = 0
                _ = ccurl_getinfo_double(handle, CURLINFO_CONNECT_TIME, &connectTime)
                kind = connectTime == 0 && uploaded == 0 ? .connect : .timeout
            case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_PARTIAL_FILE:
                kind = .reset
            default:
                kind = .other
            }
            return .failure(TransportFailure(kind: kind, bodySent: kind != .connect && kind != .tlsVerification && bodySent, detail: detail))
        }
        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return .success(HTTPResponse(status: status, headers: sink.headers, body: sink.body))
    }

    private func check(_ code: CURLcode) throws {
        guard code == CURLE_OK else {
            throw TransportSetupError(message: "libcurl option failed: \(String(cString: curl_easy_strerror(code)))")
        }
    }
}

public struct TransportSetupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Where libcurl's callbacks put the response; reached through an opaque pointer.
private final class ResponseSink {
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var limit = Int.max
    var tooLarge = false
}
