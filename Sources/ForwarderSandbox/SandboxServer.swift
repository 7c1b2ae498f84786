import ForwarderCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A local stand-in for TikTok's Events API 2.0: validates requests as TikTok does, records
/// what it accepts, counts duplicates by TikTok's dedup key, and misbehaves on demand.
public final class SandboxServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        /// 0 picks a free port.
        public var port = 0
        public var accessToken: String
        /// More tokens accepted besides ``accessToken`` (several destinations, one sandbox).
        public var extraAccessTokens: [String] = []
        /// Accepted events are appended here as NDJSON.
        public var recordPath: String?
        /// Skip validation and recording; just count events (for benchmarks).
        public var countOnly = false
        public var seed: UInt64 = 1
        public var failRate = 0.0
        public var rateLimitRate = 0.0
        public var http429Rate = 0.0
        public var resetRate = 0.0
        public var timeoutRate = 0.0
        public var delayMillis = 0
        public var rejectEventIDPrefix: String?
        public var threads = 1

        public init(accessToken: String) { self.accessToken = accessToken }
    }

    public let configuration: Configuration
    public let port: Int
    let state: SandboxState
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    private let closed = Mutex(false)

    /// Binds and starts serving.
    public init(configuration: Configuration) throws {
        self.configuration = configuration
        let state = try SandboxState(configuration: configuration)
        self.state = state
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // IPPROTO_TCP level (.socketOption would set SO_DEBUG): keep-alive clients must not stall 40 ms
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                state.connectionOpened()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SandboxHandler(state: state))
                }
            }
        do {
            channel = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        port = channel.localAddress?.port ?? configuration.port
    }

    /// Blocks until the server is closed.
    public func wait() throws {
        try channel.closeFuture.wait()
    }

    /// Stops serving and flushes the record file. Safe to call more than once.
    public func close() throws {
        guard closed.withLock({ (was: inout Bool) -> Bool in defer { was = true }; return !was }) else { return }
        try? channel.close().wait()
        state.flush()
        try group.syncShutdownGracefully()
    }

    public var stats: SandboxStats { state.snapshot() }

    /// Replaces the access token the sandbox accepts (simulates a revoked token).
    public func setAccessToken(_ token: String) { state.setAccessTokens([token]) }

    /// Replaces the tokens the sandbox accepts: the ones left out are revoked.
    public func setAccessTokens(_ tokens: Set<String>) { state.setAccessTokens(tokens) }
}

public struct SandboxStats: Sendable, Equatable {
    public var requests = 0
    public var connections = 0
    public var eventsAccepted = 0
    public var duplicates = 0
    public var rejectedRequests = 0
    public var faults: [String: Int] = [:]

    public var json: String {
        var faultsObject = JSONObject()
        for key in ["fail", "rate_limit", "http429", "reset", "timeout", "reject_prefix"] {
            faultsObject.append(key, .number(String(faults[key] ?? 0)))
        }
        var o = JSONObject()
        o.append("requests", .number(String(requests)))
        o.append("connections", .number(String(connections)))
        o.append("events_accepted", .number(String(eventsAccepted)))
        o.append("duplicates", .number(String(duplicates)))
        o.append("rejected_requests", .number(String(rejectedRequests)))
        o.append("faults", .object(faultsObject))
        return JSONWriter.encode(.object(o))
    }
}

/// What to do with one request, decided under the state's lock.
enum SandboxDecision {
    case respond(status: HTTPResponseStatus, headers: [(String, String)], body: String)
    case reset
    case neverAnswer
}

/// Everything shared by the connections: counters, the seeded fault generator, the dedup
/// keys and the record file.
final class SandboxState: @unchecked Sendable {
    private let lock = NSLock()
    private let configuration: SandboxServer.Configuration
    private var accessTokens: Set<String>
    private var rng: SplitMix64
    private var stats = SandboxStats()
    private var seen = Set<String>()
    private var record: FileHandle?
    private var recordBuffer: [UInt8] = []

    init(configuration: SandboxServer.Configuration) throws {
        self.configuration = configuration
        accessTokens = Set([configuration.accessToken] + configuration.extraAccessTokens)
        rng = SplitMix64(seed: configuration.seed)
        if let path = configuration.recordPath {
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw SandboxError(message: "cannot create record file '\(path)'")
                }
            }
            guard let handle = FileHandle(forWritingAtPath: path) else { throw SandboxError(message: "cannot open record file '\(path)'") }
            handle.seekToEndOfFile()
            record = handle
        }
    }

    func connectionOpened() {
        lock.withLock { stats.connections += 1 }
    }

    func setAccessTokens(_ tokens: Set<String>) {
        lock.withLock { accessTokens = tokens }
    }

    func snapshot() -> SandboxStats {
        lock.withLock { stats }
    }

    func flush() {
        lock.withLock { flushLocked() }
    }

    private func flushLocked() {
        guard let record, !recordBuffer.isEmpty else { return }
        record.write(Data(recordBuffer))
        recordBuffer.removeAll(keepingCapacity: true)
    }

    private func fault(_ name: String) {
        stats.faults[name, default: 0] += 1
    }

    private static func answer(_ code: Int, _ message: String, requestID: Int, status: HTTPResponseStatus = .ok, headers: [(String, String)] = []) -> SandboxDecision {
        var w = JSONWriter(capacity: 128)
        w.raw("{\"code\":"); w.integer(Int64(code))
        w.raw(",\"message\":"); w.string(message)
        w.raw(",\"request_id\":"); w.string("sandbox-\(requestID)")
        w.raw(",\"data\":{}}")
        return .respond(status: status, headers: headers, body: String(decoding: w.bytes, as: UTF8.self))
    }

    /// Decides the answer to a track request.
    func handleTrack(token: String?, body: ByteBuffer) -> SandboxDecision {
        lock.lock()
        defer { lock.unlock() }
        stats.requests += 1
        let id = stats.requests
        // Faults first, as a network or an overloaded server would produce them; one roll
        // per request keeps a seed's sequence reproducible whatever the request contains.
        let roll = rng.nextUnit()
        var threshold = 0.0
        for (rate, name) in [(configuration.resetRate, "reset"), (configuration.timeoutRate, "timeout"),
                             (configuration.failRate, "fail"), (configuration.http429Rate, "http429"),
                             (configuration.rateLimitRate, "rate_limit")] {
            threshold += rate
            if rate > 0, roll < threshold {
                fault(name)
                switch name {
                case "reset": return .reset
                case "timeout": return .neverAnswer
                case "fail": return .respond(status: .internalServerError, headers: [], body: #"{"code":50000,"message":"sandbox: injected server error","request_id":"sandbox-\#(id)","data":null}"#)
                case "http429": return Self.answer(40100, "sandbox: too many requests (HTTP 429)", requestID: id, status: .tooManyRequests, headers: [("Retry-After", "1")])
                default: return Self.answer(40100, "sandbox: too many requests", requestID: id)
                }
            }
        }
        guard let token, accessTokens.contains(token) else {
            stats.rejectedRequests += 1
            return Self.answer(40105, "The access token is invalid or has been revoked", requestID: id)
        }
        if configuration.countOnly {
            let count = body.withUnsafeReadableBytes { TrackRequestValidator.countEvents($0) }
            stats.eventsAccepted += count
            return Self.answer(0, "OK", requestID: id)
        }
        let request: JSON
        do {
            request = try body.withUnsafeReadableBytes { raw throws(JSONParseError) in
                try JSONParser.parse(UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), count: raw.count))
            }
        } catch {
            stats.rejectedRequests += 1
            return Self.answer(40002, "request body: \(error.description)", requestID: id)
        }
        if let problem = TrackRequestValidator.firstProblem(in: request) {
            stats.rejectedRequests += 1
            return Self.answer(40002, problem, requestID: id)
        }
        guard case .array(let events)? = request["data"] else { return Self.answer(40002, "data: must be an array", requestID: id) }
        if let prefix = configuration.rejectEventIDPrefix, !prefix.isEmpty,
           let index = events.firstIndex(where: { $0["event_id"]?.stringValue?.hasPrefix(prefix) == true }) {
            stats.rejectedRequests += 1
            fault("reject_prefix")
            return Self.answer(40002, "data.\(index).event_id: the event was rejected (sandbox --reject-event-id-prefix)", requestID: id)
        }
        let pixel = request["event_source_id"]?.stringValue ?? ""
        let eventSource = request["event_source"]?.stringValue ?? ""
        let testCode = request["test_event_code"]?.stringValue
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for event in events {
            let key = pixel + "\u{1}" + (event["event"]?.stringValue ?? "") + "\u{1}" + (event["event_id"]?.stringValue ?? "")
            if !seen.insert(key).inserted { stats.duplicates += 1 }
            stats.eventsAccepted += 1
            if record != nil {
                var w = JSONWriter(capacity: 1_500)
                w.raw("{\"received_at\":"); w.integer(now)
                w.raw(",\"event_source\":"); w.string(eventSource)
                w.raw(",\"event_source_id\":"); w.string(pixel)
                w.raw(",\"test_event_code\":"); if let testCode { w.string(testCode) } else { w.raw("null") }
                w.raw(",\"event\":"); w.value(event)
                w.raw("}\n")
                recordBuffer.append(contentsOf: w.bytes)
            }
        }
        flushLocked()
        return Self.answer(0, "OK", requestID: id)
    }
}

struct SandboxError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same faults.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// One connection: collects a request, asks the state what to do, does it.
final class SandboxHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: SandboxState
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var hung = false

    init(state: SandboxState) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head, !hung else { return }
            self.head = nil
            handle(head, context: context)
        }
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.POST, "/open_api/v1.3/event/track/"), (.POST, "/open_api/v1.3/event/track"):
            let decision = state.handleTrack(token: head.headers.first(name: "Access-Token"), body: body)
            let delay = state.delayMillis
            if delay > 0 {
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) {
                    let (handler, context) = bound.value
                    handler.carryOut(decision, head: head, context: context)
                }
            } else {
                carryOut(decision, head: head, context: context)
            }
        case (.GET, "/_sandbox/stats"):
            respond(.ok, body: state.snapshot().json, head: head, context: context)
        case (.PUT, "/_sandbox/access-token"):
            // One token per line (or separated by white space): the ones accepted from now on.
            let text = body.getString(at: body.readerIndex, length: body.readableBytes) ?? ""
            state.setAccessTokens(Set(text.split(whereSeparator: { $0 == "\n" || $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)))
            respond(.ok, body: #"{"ok":true}"#, head: head, context: context)
        default:
            respond(.notFound, body: #"{"code":40400,"message":"not found"}"#, head: head, context: context)
        }
    }

    private func carryOut(_ decision: SandboxDecision, head: HTTPRequestHead, context: ChannelHandlerContext) {
        switch decision {
        case .respond(let status, let headers, let body):
            respond(status, headers: headers, body: body, head: head, context: context)
        case .reset:
            // SO_LINGER 0 makes close() send a TCP RST, as a crashing peer would.
            if let provider = context.channel as? SocketOptionProvider {
                let channel = context.channel
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        case .neverAnswer:
            hung = true  // read on, answer nothing: the client's timeout must fire
        }
    }

    private func respond(_ status: HTTPResponseStatus, headers extra: [(String, String)] = [], body text: String,
                         head: HTTPRequestHead, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        for (name, value) in extra { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

extension SandboxState {
    var delayMillis: Int { configuration.delayMillis }
}
