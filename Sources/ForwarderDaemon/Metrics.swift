import ForwarderCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// The daemon's metrics, on a Prometheus registry (served by `run --metrics-listen`; without
/// it they are only counted in memory). Every name starts `tiktok_forwarder_`, carries its unit
/// (`_seconds`, `_total`, …) and a `# HELP` line, and every label takes a bounded set of values
/// (codes, never free text).
///
/// | metric | type | labels |
/// |---|---|---|
/// | `build_info` | gauge, 1 | `version` |
/// | `rows` | gauge | `state` = pending, inflight, dead |
/// | `oldest_pending_age_seconds` | gauge | |
/// | `events_total` | counter | `outcome` = delivered, skipped, dead; `reason` for dead: a `DeadReason` code |
/// | `dropped_fields_total` | counter | `field`: the TikTok field an invalid optional value was dropped from |
/// | `requests_total` | counter | `outcome` (delivered, retry, rate_limited, invalid_event, configuration_error, unknown), `code` (TikTok's, or `none`) |
/// | `request_duration_seconds` | histogram | |
/// | `batch_events` | histogram | |
/// | `requests_in_flight`, `in_flight_limit` | gauge | |
/// | `paused` | gauge (0/1) | `reason` = access_token, permission, tls, endpoint, other (all 0 while delivering) |
public final class DaemonMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let counters = Mutex<[String: Prometheus.Counter]>([:])
    private let requestDuration: DurationHistogram
    private let batchEvents: ValueHistogram
    private let inFlight: Prometheus.Gauge
    private let limit: Prometheus.Gauge
    private let oldestAge: Prometheus.Gauge
    private let writeLock: Prometheus.Counter
    private let writeLockSeen = Mutex<Int64>(0)
    private let rows: [String: Prometheus.Gauge]
    private let paused = Mutex<[String: [PauseReason: Prometheus.Gauge]]>([:])

    static let help: [String: String] = [
        "tiktok_forwarder_build_info": "Always 1; the version label says which build is running.",
        "tiktok_forwarder_rows": "Outbox rows per state (finished rows, which can be millions, are not counted here).",
        "tiktok_forwarder_oldest_pending_age_seconds": "Age of the oldest row not yet delivered, skipped or dead: the number to alert on.",
        "tiktok_forwarder_events_total": "Events settled by this process, by outcome and destination, and for dead ones by reason code.",
        "tiktok_forwarder_dropped_fields_total": "Optional fields dropped for an invalid value (the event was still sent), by TikTok field.",
        "tiktok_forwarder_requests_total": "Requests to the Events API by outcome, TikTok code and destination.",
        "tiktok_forwarder_request_duration_seconds": "Events API request latency.",
        "tiktok_forwarder_batch_events": "Events per request.",
        "tiktok_forwarder_requests_in_flight": "Requests in flight now.",
        "tiktok_forwarder_in_flight_limit": "The adaptive limit on requests in flight (halves on rate limiting).",
        "tiktok_forwarder_store_write_lock_seconds_total": "Time this process held SQLite's write lock (producers' INSERTs wait meanwhile); its rate is the share of time they may wait.",
        "tiktok_forwarder_paused": "1 while delivery to a destination is paused on a configuration error, by destination and reason code; all 0 while delivering.",
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        func gauge(_ name: String, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
            registry.makeGauge(name: name, labels: labels, help: Self.help[name]!)
        }
        gauge("tiktok_forwarder_build_info", [("version", ForwarderVersion.string)]).set(Int64(1))
        requestDuration = registry.makeDurationHistogram(
            name: "tiktok_forwarder_request_duration_seconds", labels: [],
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                      .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30)],
            help: Self.help["tiktok_forwarder_request_duration_seconds"]!)
        batchEvents = registry.makeValueHistogram(name: "tiktok_forwarder_batch_events", labels: [], buckets: [1, 10, 50, 100, 250, 500, 750, 1000],
                                                  help: Self.help["tiktok_forwarder_batch_events"]!)
        inFlight = gauge("tiktok_forwarder_requests_in_flight")
        limit = gauge("tiktok_forwarder_in_flight_limit")
        oldestAge = gauge("tiktok_forwarder_oldest_pending_age_seconds")
        writeLock = registry.makeCounter(name: "tiktok_forwarder_store_write_lock_seconds_total", labels: [],
                                         help: Self.help["tiktok_forwarder_store_write_lock_seconds_total"]!)
        rows = Dictionary(uniqueKeysWithValues: ["pending", "inflight", "dead"].map { ($0, gauge("tiktok_forwarder_rows", [("state", $0)])) })
    }

    private func counter(_ name: String, _ labels: [(String, String)]) -> Prometheus.Counter {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        return counters.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = registry.makeCounter(name: name, labels: labels, help: Self.help[name]!)
            cache[key] = counter
            return counter
        }
    }

    func request(outcome: String, code: Int?, events: Int, destination: String = Destination.defaultName, nanoseconds: Int64) {
        counter("tiktok_forwarder_requests_total", [("outcome", outcome), ("code", code.map(String.init) ?? "none"), ("destination", destination)]).increment()
        requestDuration.recordNanoseconds(nanoseconds)
        batchEvents.record(Double(events))
    }

    func events(_ outcome: String, reason: String? = nil, count: Int, destination: String = Destination.defaultName) {
        guard count > 0 else { return }
        counter("tiktok_forwarder_events_total", [("outcome", outcome)] + (reason.map { [("reason", $0)] } ?? []) + [("destination", destination)])
            .increment(by: Int64(count))
    }

    /// One count per dropped field, from the transform's warnings (`field: why`).
    func droppedFields(_ warnings: [String]) {
        for warning in warnings {
            guard let colon = warning.firstIndex(of: ":") else { continue }
            let field = warning[..<colon]
            // Field paths only (the transform's own names): the label set stays bounded.
            guard !field.isEmpty, field.count <= 48, field.allSatisfy({ $0.isLetter || $0 == "." || $0 == "_" }) else { continue }
            counter("tiktok_forwarder_dropped_fields_total", [("field", String(field))]).increment()
        }
    }

    /// Reason label of a dead row, from its stored error.
    static func deadReason(_ error: String) -> String { DeadReason.of(error: error).rawValue }

    private let requestsInFlight = Mutex(0)

    /// Around each HTTP request (not around claims or idle turns).
    func requestStarted() { inFlight.set(Int64(requestsInFlight.withLock { $0 += 1; return $0 })) }
    func requestFinished() { inFlight.set(Int64(requestsInFlight.withLock { $0 -= 1; return $0 })) }

    /// The write-lock time so far (``sqliteWriteLockNanoseconds``), as a counter in seconds.
    func update(writeLockNanoseconds total: Int64) {
        let delta = writeLockSeen.withLock { seen -> Int64 in
            defer { seen = max(seen, total) }
            return total - seen
        }
        if delta > 0 { writeLock.increment(by: Double(delta) / 1e9) }
    }

    /// The in-flight limit, and each destination's pause (`nil`: delivering).
    func update(limit currentLimit: Int, paused reasons: [(destination: String, reason: String?)]) {
        limit.set(Int64(currentLimit))
        paused.withLock { gauges in
            for (destination, reason) in reasons {
                if gauges[destination] == nil {
                    gauges[destination] = Dictionary(uniqueKeysWithValues: PauseReason.allCases.map {
                        ($0, registry.makeGauge(name: "tiktok_forwarder_paused", labels: [("reason", $0.rawValue), ("destination", destination)],
                                                help: Self.help["tiktok_forwarder_paused"]!))
                    })
                }
                let code = reason.map(PauseReason.of)
                for (key, gauge) in gauges[destination]! { gauge.set(Int64(key == code ? 1 : 0)) }
            }
        }
    }

    func update(backlog: Backlog, now: UnixMillis) {
        rows["pending"]?.set(Int64(backlog.pending))
        rows["inflight"]?.set(Int64(backlog.inflight))
        rows["dead"]?.set(Int64(backlog.dead))
        oldestAge.set(backlog.oldestCreatedAt.map { Double(max(0, now.subtracting(saturating: $0))) / 1000 } ?? 0)
    }
}

/// Why delivery is paused, as a label value (the reason text itself is in `status` and the log).
enum PauseReason: String, CaseIterable, Sendable {
    case accessToken = "access_token", permission, tls, endpoint, other

    static func of(_ reason: String) -> PauseReason {
        if reason.contains("(40105") || reason.contains("HTTP 401") { return .accessToken }
        if reason.contains("(40001") || reason.contains("HTTP 403") { return .permission }
        if reason.hasPrefix("TLS verification") { return .tls }
        if reason.hasPrefix("the endpoint answered") { return .endpoint }
        return .other
    }
}

/// `GET /metrics` in Prometheus's text format, on its own event loop thread.
public final class MetricsServer: Sendable {
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Serves `registry` at `http://host:port/metrics`.
    public init(host: String, port: Int, registry: PrometheusCollectorRegistry) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // IPPROTO_TCP level: .socketOption(.tcp_nodelay) would set SOL_SOCKET option 1, SO_DEBUG,
            // which needs CAP_NET_ADMIN: as a non-root user every accepted connection was closed.
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ConfigurationError("cannot listen for metrics on \(host):\(port): \(error)")
        }
        self.port = channel.localAddress?.port ?? port
    }

    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// `ADDR:PORT`, `:PORT` or `PORT`; loopback unless an address is named.
    public static func parseListen(_ text: String) throws -> (host: String, port: Int) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if let colon = text.lastIndex(of: ":") {
            let named = text[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if !named.isEmpty { host = named }
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65_535).contains(port) else {
            throw ConfigurationError("metrics listen address '\(text)' is not ADDR:PORT (e.g. 127.0.0.1:9464)")
        }
        return (host, port)
    }
}

private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let registry: PrometheusCollectorRegistry

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let found = request.method == .GET && (request.uri == "/metrics" || request.uri.hasPrefix("/metrics?"))
        let body = found ? registry.emitToBuffer() : Array("not found: the metrics are at /metrics\n".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
        headers.add(name: "Content-Length", value: "\(body.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
