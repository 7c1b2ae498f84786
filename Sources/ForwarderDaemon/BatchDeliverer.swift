import ForwarderCore
import Foundation
import Logging

/// The wall clock: an I/O seam, so tests can pin time.
public protocol WallClock: Sendable {
    func nowMillis() -> UnixMillis
}

public struct SystemClock: WallClock {
    public init() {}
    public func nowMillis() -> UnixMillis {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UnixMillis(ts.tv_sec) * 1000 + UnixMillis(ts.tv_nsec) / 1_000_000
    }
}

/// One worker's delivery cycle: claim a batch, transform it, send it, settle every row.
///
/// Owns a store connection, a transport and a transformer; used by one thread at a time.
/// Every claimed row leaves `deliverOnce` settled (delivered, skipped, dead, retry) or
/// released; only a crash leaves it `inflight`, for lease expiry to return it.
public final class BatchDeliverer {
    /// One destination as requests address it.
    public struct Target: Sendable {
        public var name: String
        /// The rows this destination claims.
        public var route: Route
        /// `event_source_id` per event source.
        public var sourceIDs: [EventSource: String]
        public var testEventCode: String?
        public var partnerName: String?

        public init(name: String = Destination.defaultName, isDefault: Bool = true, sourceIDs: [EventSource: String], testEventCode: String?,
                    partnerName: String? = nil) {
            self.name = name
            route = Route(name: name, includingUnrouted: isDefault)
            self.sourceIDs = sourceIDs
            self.testEventCode = testEventCode
            self.partnerName = partnerName
        }

        /// A web pixel.
        public init(pixelCode: String, testEventCode: String?, partnerName: String? = nil) {
            self.init(sourceIDs: [.web: pixelCode], testEventCode: testEventCode, partnerName: partnerName)
        }

        public init(_ destination: Destination, isDefault: Bool) {
            self.init(name: destination.name, isDefault: isDefault, sourceIDs: destination.sourceIDs, testEventCode: destination.testEventCode,
                      partnerName: destination.partnerName)
        }
    }

    /// A destination with what this worker needs to deliver to it.
    public struct Lane {
        public var target: Target
        public var transformer: Transformer
        public var token: @Sendable () -> String
        public init(target: Target, transformer: Transformer, token: @escaping @Sendable () -> String) {
            self.target = target
            self.transformer = transformer
            self.token = token
        }
    }

    let store: OutboxStore
    let transport: EventTransport
    let lanes: [Lane]
    let settings: DeliverySettings
    let owner: String
    let control: DeliveryControl
    let clock: WallClock
    let logger: Logger
    let metrics: DaemonMetrics
    var random: () -> Double
    /// Whether this deliverer's claims take suspect rows (see ``OutboxStore/claim``): one
    /// worker per daemon does, so that suspects are processed one at a time.
    public var takesSuspects = true
    private var noteBudget = LogBudget()

    public init(store: OutboxStore, transport: EventTransport, lanes: [Lane], settings: DeliverySettings,
                owner: String, control: DeliveryControl, clock: WallClock = SystemClock(),
                logger: Logger, metrics: DaemonMetrics = DaemonMetrics(), random: @escaping () -> Double = { Double.random(in: 0..<1) }) {
        precondition(!lanes.isEmpty, "a deliverer needs a destination")
        self.store = store
        self.transport = transport
        self.lanes = lanes
        self.settings = settings
        self.owner = owner
        self.control = control
        self.clock = clock
        self.logger = logger
        self.metrics = metrics
        self.random = random
    }

    /// One destination.
    public convenience init(store: OutboxStore, transport: EventTransport, transformer: Transformer, settings: DeliverySettings, target: Target,
                            owner: String, control: DeliveryControl, token: @escaping @Sendable () -> String, clock: WallClock = SystemClock(),
                            logger: Logger, metrics: DaemonMetrics = DaemonMetrics(), random: @escaping () -> Double = { Double.random(in: 0..<1) }) {
        self.init(store: store, transport: transport, lanes: [Lane(target: target, transformer: transformer, token: token)], settings: settings,
                  owner: owner, control: control, clock: clock, logger: logger, metrics: metrics, random: random)
    }

    /// A claimed row and where its encoded event sits in ``batch``.
    typealias Item = (row: ClaimedRow, event: Range<Int>)

    /// One request's worth: the events of one event source, and their body as it is written.
    struct Group {
        var items: [Item] = []
        var body: JSONWriter

        /// Appends the event, unless the body would outgrow `maxBytes` (a first event always fits).
        mutating func append(_ event: TikTokEvent, maxBytes: Int, row: ClaimedRow) -> Bool {
            let mark = body.count
            if !items.isEmpty { body.raw(UInt8(ascii: ",")) }
            let start = body.count
            event.encode(into: &body)
            if !items.isEmpty, body.count + 2 > maxBytes {
                body.truncate(to: mark)
                return false
            }
            items.append((row, start..<body.count))
            return true
        }
    }

    /// The current request group's body, written once: head, every event, tail. The first
    /// request sends it as is; smaller requests (isolation) are cut from its event ranges.
    /// Its buffer is written over by the next batch's first group: a fresh ~1.5 MB allocation
    /// per batch cost page faults on every batch.
    private var batch = JSONWriter(capacity: 0)
    /// The destination (lane index) and event source of the requests being sent.
    private var lane = 0
    private var source = EventSource.web

    private var target: Target { lanes[lane].target }

    /// Claims and handles one batch of at most `limit` rows of destination `destination`
    /// (an index of the lanes); returns how many rows it claimed. The rows' events go out
    /// in one request per event source (one, unless the destination discovers sources).
    @discardableResult
    public func deliverOnce(destination: Int = 0, limit: Int? = nil) throws -> Int {
        lane = destination
        let transformer = lanes[destination].transformer
        let now = clock.nowMillis()
        var rows = try store.claim(limit: limit ?? settings.maxBatchEvents, owner: owner, leaseUntil: now.adding(saturating: settings.leaseMillis),
                                   now: now, suspects: takesSuspects, route: target.route)
        let claimed = rows.count
        guard claimed > 0 else { return 0 }
        // Requests start only while the lease leaves room for a whole one (and a margin).
        let sendDeadline = now.adding(saturating: settings.leaseMillis - settings.requestTimeoutMillis - min(5_000, settings.requestTimeoutMillis))

        // Rows that must not be processed at all are settled first, in their own transaction,
        // before anything could crash on them.
        let refused = rows.compactMap { row in Self.refusal(row, maxAttempts: settings.retry.maxAttempts).map { (row, $0) } }
        if !refused.isEmpty {
            try settle(refused.map { .dead(id: $0.0.id, AttemptRecord(error: $0.1)) }, now: now)
            control.record(dead: refused.count, now: now)
            for (row, reason) in refused {
                metrics.events("dead", reason: DaemonMetrics.deadReason(reason), count: 1, destination: target.name)
                logger.warning("event dead-lettered", metadata: ["row": "\(row.id)", "event_id": "\(row.eventID)", "reason": "\(reason)"])
            }
            let ids = Set(refused.map(\.0.id))
            rows.removeAll { ids.contains($0.id) }
        }

        var groups: [EventSource: Group] = [:]
        var order: [EventSource] = []
        var settlements: [Settlement] = []
        var overflow: [Int64] = []
        let capacity = rows.reduce(256) { $0 + $1.payload.count + 256 }
        for var row in rows {
            #if DEBUG
            Self.crashHookForTests(row)
            #endif
            let outcome = transformer.transform(payload: row.payload, eventID: row.eventID, insertedAtMillis: row.createdAt, nowMillis: now)
            row.payload = []  // the encoded event replaces it; a batch's payloads are ~1.2 MB
            switch consume outcome {
            case .skipped(let reason):
                settlements.append(.skipped(id: row.id, reason: reason))
                note("event skipped", now: now, ["event_id": "\(row.eventID)", "reason": "\(reason)"])
            case .rejected(let reason):
                settlements.append(.dead(id: row.id, AttemptRecord(error: "rejected by the transform: \(reason)")))
                logger.warning("event dead-lettered", metadata: ["row": "\(row.id)", "event_id": "\(row.eventID)", "reason": "\(reason)"])
            case .event(let event, let warnings):
                guard let sourceID = target.sourceIDs[event.source] else {
                    // Autodiscovery chose a source this destination has no id for.
                    let reason = "an \(event.source.rawValue) event, but destination '\(target.name)' has no \(event.source.idName) (event_source_id: {\(event.source.rawValue): …}); configure it, then dead redrive"
                    settlements.append(.dead(id: row.id, AttemptRecord(error: "rejected by the transform: \(reason)")))
                    logger.warning("event dead-lettered", metadata: ["row": "\(row.id)", "event_id": "\(row.eventID)", "reason": "\(reason)"])
                    continue
                }
                if groups[event.source] == nil {
                    var body = JSONWriter(capacity: order.isEmpty ? 0 : 4_096)
                    if order.isEmpty {
                        swap(&body, &batch)  // the only reference: written over in place
                        body.truncate(to: 0)
                        body.reserveCapacity(capacity)
                    }
                    TrackRequest.writeHead(source: event.source, sourceID: sourceID, testEventCode: target.testEventCode,
                                           partnerName: target.partnerName, into: &body)
                    groups[event.source] = Group(body: body)
                    order.append(event.source)
                }
                let fits = groups[event.source]!.append(event, maxBytes: settings.maxBatchBytes, row: row)
                if !fits { overflow.append(row.id) }  // does not fit: the next batch takes it
                if !warnings.isEmpty {
                    metrics.droppedFields(warnings)
                    note("optional fields dropped", now: now, ["event_id": "\(row.eventID)", "fields": "\(warnings.joined(separator: "; "))"])
                }
            }
        }
        rows = []
        if !settlements.isEmpty {
            try settle(settlements, now: now)
            let skipped = settlements.filter { if case .skipped = $0 { return true } else { return false } }.count
            control.record(skipped: skipped, dead: settlements.count - skipped, now: now)
            metrics.events("skipped", count: skipped, destination: target.name)
            metrics.events("dead", reason: "transform", count: settlements.count - skipped, destination: target.name)
        }
        if !overflow.isEmpty {
            try store.release(ids: overflow, owner: owner, now: now)
        }
        for eventSource in order {
            guard var group = groups.removeValue(forKey: eventSource), !group.items.isEmpty else { continue }
            if eventSource != order.first, control.paused(destination: destination) != nil {
                // An earlier group paused this destination: the rest waits with it.
                try store.release(ids: group.items.map(\.row.id), owner: owner, now: clock.nowMillis())
                control.record(released: group.items.count, now: clock.nowMillis())
                continue
            }
            TrackRequest.writeTail(into: &group.body)
            source = eventSource
            swap(&batch, &group.body)
            try send(group.items, sendDeadline: sendDeadline, wholeBatch: true)
        }
        return claimed
    }

    /// Sends `items` as one request and settles them by the outcome; isolates invalid events.
    /// Returns how many of them were delivered.
    @discardableResult
    private func send(_ items: [Item], sendDeadline: UnixMillis, wholeBatch: Bool = false) throws -> Int {
        guard !items.isEmpty else { return 0 }
        let startedAt = clock.nowMillis()
        if control.isStopping || startedAt >= sendDeadline {
            // Not sent: back to pending without consuming the attempt.
            try store.release(ids: items.map(\.row.id), owner: owner, now: startedAt)
            control.record(released: items.count, now: startedAt)
            return 0
        }
        let started = ContinuousClock.now
        metrics.requestStarted()
        let accessToken = lanes[lane].token()
        let (result, bodyBytes) = batch.withBytes { batch in
            if wholeBatch { return (transport.post(body: batch, accessToken: accessToken), batch.count) }
            let body = TrackRequest.body(source: source, sourceID: target.sourceIDs[source] ?? "", testEventCode: target.testEventCode,
                                         partnerName: target.partnerName, events: items.map { batch[$0.event] })
            return (transport.post(body: body, accessToken: accessToken), body.count)
        }
        metrics.requestFinished()
        let elapsed = ContinuousClock.now - started
        let now = clock.nowMillis()
        let (classified, status, code) = ResponseClassifier.classifyDetailed(result)
        let outcome = classified.redacting(accessToken)  // a peer may echo the token back
        metrics.request(outcome: Self.name(outcome), code: code, events: items.count, destination: target.name,
                        nanoseconds: elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        logger.debug("request", metadata: ["events": "\(items.count)", "bytes": "\(bodyBytes)", "ms": "\(now - startedAt)", "outcome": "\(Self.name(outcome))"])

        switch outcome {
        case .delivered:
            let record = AttemptRecord(httpStatus: status, tiktokCode: code)
            try settle(items.map { item in
                var kept = record
                if settings.keepSent { kept.sentEvent = batch.withBytes { String(decoding: $0[item.event], as: UTF8.self) } }
                return .delivered(id: item.row.id, kept)
            }, now: now)
            control.record(requests: 1, delivered: items.count, now: now)
            metrics.events("delivered", count: items.count, destination: target.name)
            if control.resume(destination: lane) { logger.notice("delivery resumed: TikTok accepted a request", metadata: destinationMetadata) }
            return items.count

        case .invalidEvent(let index, let message):
            control.record(requests: 1, now: now)
            return try isolate(items, index: index, message: message, status: status, code: code, sendDeadline: sendDeadline)

        case .configurationError(let reason):
            control.record(requests: 1, released: items.count, now: now)
            try store.release(ids: items.map(\.row.id), owner: owner, now: now)
            if control.paused(destination: lane) == nil {
                var metadata = destinationMetadata
                metadata["http_status"] = "\(status.map(String.init) ?? "-")"
                metadata["tiktok_code"] = "\(code.map(String.init) ?? "-")"
                logger.error("delivery paused: \(reason)", metadata: metadata)
            }
            control.pause(reason: reason, probeAt: now + settings.probeIntervalMillis, destination: lane)
            return 0

        case .rateLimited(let reason, let retryAfter):
            control.rateLimited()
            control.record(requests: 1, now: now)
            logger.warning("rate limited; lowering requests in flight", metadata: ["limit": "\(control.inFlightLimit)", "reason": "\(reason)"])
            try retry(items, reason: reason, retryAfter: retryAfter, mayHaveReached: false, status: status, code: code, now: now)
            return 0

        case .retry(let reason, let retryAfter, let mayHaveReached):
            control.record(requests: 1, now: now)
            logger.info("request failed; will retry", metadata: ["events": "\(items.count)", "reason": "\(reason)"])
            try retry(items, reason: reason, retryAfter: retryAfter, mayHaveReached: mayHaveReached, status: status, code: code, now: now)
            return 0

        case .unknown(let reason, let mayHaveReached):
            control.record(requests: 1, now: now)
            logger.warning("unexpected response; will retry", metadata: ["events": "\(items.count)", "reason": "\(reason)"])
            try retry(items, reason: reason, retryAfter: nil, mayHaveReached: mayHaveReached, status: status, code: code, now: now)
            return 0
        }
    }

    /// TikTok failed the whole request for invalid events (40002). With an index, that event
    /// is dead and the rest is resent; without one, the batch is bisected. A half that
    /// passed proves the other half holds the culprit, so that half is split without
    /// being sent whole: about one request per halving, ~10 for one bad event in 1,000.
    private func isolate(_ items: [Item], index: Int?, message: String, status: Int?, code: Int?, sendDeadline: UnixMillis) throws -> Int {
        let now = clock.nowMillis()
        let reason = "TikTok rejected the event: \(message)"
        if items.count == 1 {
            try settle([.dead(id: items[0].row.id, AttemptRecord(httpStatus: status, tiktokCode: code, error: reason))], now: now)
            control.record(dead: 1, now: now)
            metrics.events("dead", reason: "rejected", count: 1, destination: target.name)
            logger.warning("event dead-lettered", metadata: ["event_id": "\(items[0].row.eventID)", "reason": "\(reason)"])
            return 0
        }
        if let index, items.indices.contains(index) {
            try settle([.dead(id: items[index].row.id, AttemptRecord(httpStatus: status, tiktokCode: code, error: reason))], now: now)
            control.record(dead: 1, now: now)
            metrics.events("dead", reason: "rejected", count: 1, destination: target.name)
            logger.warning("event dead-lettered", metadata: ["event_id": "\(items[index].row.eventID)", "reason": "\(reason)"])
            var rest = items
            rest.remove(at: index)
            return try send(rest, sendDeadline: sendDeadline)
        }
        return try bisect(items, knownBad: true, message: message, status: status, code: code, sendDeadline: sendDeadline)
    }

    private func bisect(_ items: [Item], knownBad: Bool, message: String, status: Int?, code: Int?, sendDeadline: UnixMillis) throws -> Int {
        guard items.count > 1 else {
            if knownBad {
                return try isolate(items, index: 0, message: message + " (isolated by bisection)", status: status, code: code, sendDeadline: sendDeadline)
            }
            return try send(items, sendDeadline: sendDeadline)
        }
        let left = Array(items[..<(items.count / 2)])
        let right = Array(items[(items.count / 2)...])
        let leftDelivered = try send(left, sendDeadline: sendDeadline)
        if leftDelivered == left.count && !control.isStopping && clock.nowMillis() < sendDeadline {
            return leftDelivered + (try bisect(right, knownBad: true, message: message, status: status, code: code, sendDeadline: sendDeadline))
        }
        return leftDelivered + (try send(right, sendDeadline: sendDeadline))
    }

    private func retry(_ items: [Item], reason: String, retryAfter: Int64?, mayHaveReached: Bool, status: Int?, code: Int?, now: UnixMillis) throws {
        var settlements: [Settlement] = []
        var dead = 0
        for (row, _) in items {
            let firstSent = row.firstSentAt ?? (mayHaveReached ? now : nil)
            let record = AttemptRecord(httpStatus: status, tiktokCode: code, error: reason, mayHaveReachedTikTok: mayHaveReached)
            switch settings.retry.decide(attempts: row.attempts, createdAt: row.createdAt, firstSentAt: firstSent,
                                         retryAfterMillis: retryAfter, lastError: reason, now: now, random: random()) {
            case .retry(let at):
                settlements.append(.retry(id: row.id, at: at, record))
            case .dead(let why):
                var deadRecord = record
                deadRecord.error = why
                settlements.append(.dead(id: row.id, deadRecord))
                dead += 1
                metrics.events("dead", reason: DaemonMetrics.deadReason(why), count: 1, destination: target.name)
                logger.warning("event dead-lettered", metadata: ["event_id": "\(row.eventID)", "reason": "\(why)"])
            }
        }
        try settle(settlements, now: now)
        control.record(dead: dead, retried: items.count - dead, now: now)
    }

    /// Names the destination in log lines, once a daemon has more than one.
    private var destinationMetadata: Logger.Metadata {
        lanes.count > 1 ? ["destination": "\(target.name)"] : [:]
    }

    private func settle(_ settlements: [Settlement], now: UnixMillis) throws {
        let changed = try store.settle(settlements, owner: owner, now: now)
        if changed < settlements.count {
            logger.warning("lease lost before settling; another daemon took these rows over", metadata: ["rows": "\(settlements.count - changed)"])
        }
    }

    /// An info line for a routine-but-notable event, at most 20 a minute per worker; the
    /// count of those held back is said when the next minute opens.
    private func note(_ message: Logger.Message, now: UnixMillis, _ metadata: Logger.Metadata) {
        let (log, heldBack) = noteBudget.take(now: now)
        if heldBack > 0 { logger.info("more skipped events and dropped fields were not logged", metadata: ["lines": "\(heldBack)"]) }
        if log { logger.info(message, metadata: metadata) }
    }

    /// Why a claimed row is dead-lettered before it is transformed, if it is: an `event_id`
    /// that is not UTF-8 (sending it altered would break deduplication with the pixel), or a
    /// row claimed more than `maxAttempts` times — which, since every settled failure is
    /// decided by the retry policy, means its earlier claims ended without a result: the
    /// daemon crashed, was killed or hung while processing it (or an operator set
    /// `attempts`). Without this, a row that crashes the daemon would crash-loop it forever.
    /// (Bisection claims of suspect groups are not counted: see `OutboxStore.claim`.)
    static func refusal(_ row: ClaimedRow, maxAttempts: Int) -> String? {
        if !row.eventIDIsValidUTF8 {
            return "event_id is not valid UTF-8: it is TikTok's deduplication key with the pixel and cannot be sent altered; fix the producer, then update event_id and redrive"
        }
        if row.attempts > maxAttempts {
            let unsettled = row.unsettledClaims > 0
                ? "\(row.unsettledClaims) of them ended without a result (the daemon stopped, crashed or hung while processing this row)"
                : "without a recorded result"
            return "gave up after \(row.attempts - 1) claims (max_attempts \(maxAttempts)), \(unsettled); not tried again"
        }
        return nil
    }

    #if DEBUG
    /// Debug builds only: `TIKTOK_FORWARDER_TEST_CRASH_EVENT_ID` names an event id whose
    /// processing crashes the daemon, so tests can prove that a row which crashes the daemon
    /// every time ends dead without stopping the queue. Release builds have no such hook.
    private static let crashEventID: String? = ProcessInfo.processInfo.environment["TIKTOK_FORWARDER_TEST_CRASH_EVENT_ID"]

    private static func crashHookForTests(_ row: ClaimedRow) {
        if let crashEventID, row.eventID == crashEventID { fatalError("test hook: crashing on event \(crashEventID)") }
    }
    #endif

    static func name(_ outcome: DeliveryOutcome) -> String {
        switch outcome {
        case .delivered: return "delivered"
        case .retry: return "retry"
        case .rateLimited: return "rate_limited"
        case .invalidEvent: return "invalid_event"
        case .configurationError: return "configuration_error"
        case .unknown: return "unknown"
        }
    }
}
