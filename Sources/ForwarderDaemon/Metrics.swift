import ForwarderCore
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// The daemon's metrics, through swift-metrics (a no-op until a backend is bootstrapped;
/// `run --metrics-listen` bootstraps Prometheus). Every name starts `tiktok_forwarder_`.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `rows` | gauge | `state` = pending, inflight, dead |
/// | `oldest_pending_age_seconds` | gauge | |
/// | `events_total` | counter | `outcome` = delivered, skipped, dead; `reason` for dead: transform, rejected, gave_up, too_old, ambiguous |
/// | `requests_total` | counter | `outcome` (delivered, retry, rate_limited, invalid_event, configuration_error, unknown), `code` (TikTok's, or `none`) |
/// | `request_duration_seconds` | histogram | |
/// | `batch_events` | histogram | |
/// | `requests_in_flight`, `in_flight_limit` | gauge | |
/// | `paused` | gauge (0/1) | `reason` (empty when running) |
public final class DaemonMetrics: Sendable {
    private let counters = Mutex<[String: Metrics.Counter]>([:])
    private let requestDuration = Metrics.Timer(label: "tiktok_forwarder_request_duration_seconds", preferredDisplayUnit: .seconds)
    private let batchEvents = Metrics.Recorder(label: "tiktok_forwarder_batch_events", aggregate: true)
    private let inFlight = Metrics.Gauge(label: "tiktok_forwarder_requests_in_flight")
    private let limit = Metrics.Gauge(label: "tiktok_forwarder_in_flight_limit")
    private let oldestAge = Metrics.Gauge(label: "tiktok_forwarder_oldest_pending_age_seconds")
    private let rows: [String: Metrics.Gauge] = Dictionary(uniqueKeysWithValues: ["pending", "inflight", "dead"].map {
        ($0, Metrics.Gauge(label: "tiktok_forwarder_rows", dimensions: [("state", $0)]))
    })
    private let pausedReason = Mutex<String?>(nil)

    public init() {
        Metrics.Gauge(label: "tiktok_forwarder_paused", dimensions: [("reason", "")]).record(0)
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Metrics.Counter {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return counters.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = Metrics.Counter(label: label, dimensions: dimensions)
            cache[key] = counter
            return counter
        }
    }

    func request(outcome: String, code: Int?, events: Int, nanoseconds: Int64) {
        counter("tiktok_forwarder_requests_total", [("outcome", outcome), ("code", code.map(String.init) ?? "none")]).increment()
        requestDuration.recordNanoseconds(nanoseconds)
        batchEvents.record(events)
    }

    func events(_ outcome: String, reason: String? = nil, count: Int) {
        guard count > 0 else { return }
        counter("tiktok_forwarder_events_total", [("outcome", outcome)] + (reason.map { [("reason", $0)] } ?? [])).increment(by: count)
    }

    /// Reason label of a dead row, from its stored error.
    static func deadReason(_ error: String) -> String { DeadReason.of(error: error).rawValue }

    private let requestsInFlight = Mutex(0)

    /// Around each HTTP request (not around claims or idle turns).
    func requestStarted() { inFlight.record(requestsInFlight.withLock { $0 += 1; return $0 }) }
    func requestFinished() { inFlight.record(requestsInFlight.withLock { $0 -= 1; return $0 }) }

    func update(limit currentLimit: Int, paused: String?) {
        limit.record(currentLimit)
        pausedReason.withLock { previous in
            guard previous != paused else { return }
            Metrics.Gauge(label: "tiktok_forwarder_paused", dimensions: [("reason", previous ?? "")]).record(0)
            Metrics.Gauge(label: "tiktok_forwarder_paused", dimensions: [("reason", paused ?? "")]).record(paused == nil ? 0 : 1)
            previous = paused
        }
    }

    func update(backlog: Backlog, now: UnixMillis) {
        rows["pending"]?.record(backlog.pending)
        rows["inflight"]?.record(backlog.inflight)
        rows["dead"]?.record(backlog.dead)
        oldestAge.record(backlog.oldestCreatedAt.map { Double(max(0, now.subtracting(saturating: $0))) / 1000 } ?? 0)
    }
}

/// `GET /metrics` in Prometheus's text format, on its own event loop thread.
public final class MetricsServer: Sendable {
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Bootstraps swift-metrics with Prometheus and listens on `host:port`.
    public init(host: String, port: Int) throws {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                                   .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30)]
        factory.defaultValueHistogramBuckets = [1, 10, 50, 100, 250, 500, 750, 1000]
        MetricsSystem.bootstrap(factory)
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
