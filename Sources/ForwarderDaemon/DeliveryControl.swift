import ForwarderCore
import Foundation

/// What the worker threads share: stop, per-destination pauses and idle polling, the
/// in-flight limit (AIMD), counters.
///
/// One lock; every wait is bounded so a stop request is noticed within a linger.
///
/// Idle is idle: once a claim for a destination finds nothing, at most one worker polls it
/// per `linger` and the others sleep until that poll finds rows (or a stop, pause or
/// resume), so an empty outbox costs one cheap read per destination every `linger` instead
/// of workers waking each other. A worker whose last claim found rows claims again at once.
///
/// Pauses are per destination: a revoked token on one pixel stops that pixel's claims (one
/// probe every probe interval) while the others deliver. Workers take the destinations in
/// turn, so a backlog on one never starves another.
public final class DeliveryControl: @unchecked Sendable {
    private let condition = NSCondition()
    private var limit: ConcurrencyLimit
    private var inFlight = 0
    private var stopping = false
    private var counters = Counters()
    private var deliveredTimes: [(at: UnixMillis, count: Int)] = []
    private let idlePollSeconds: Double
    private var destinations: [DestinationState]
    /// Where the next worker starts looking: the destinations are served in turn.
    private var cursor = 0

    private struct DestinationState {
        var pausedReason: String?
        var nextProbeAt: UnixMillis = 0
        var probing = false
        /// The last claim found nothing: polls are spaced by `linger` until one finds rows.
        var idle = false
        var nextPollAt = Date.distantPast
    }

    public struct Counters: Sendable, Equatable {
        public var delivered = 0
        public var skipped = 0
        public var dead = 0
        public var retried = 0
        public var requests = 0
        public var rateLimited = 0
        public var released = 0
    }

    /// `idlePollMillis`: how far apart an idle destination's polls are (default: the linger);
    /// longer when something calls ``rowsArrived()`` as rows are inserted.
    public init(maxInFlight: Int, lingerMillis: Int64 = 50, destinations: Int = 1, idlePollMillis: Int64? = nil) {
        limit = ConcurrencyLimit(maximum: maxInFlight)
        idlePollSeconds = Double(max(idlePollMillis ?? lingerMillis, 1)) / 1000
        self.destinations = Array(repeating: DestinationState(), count: max(1, destinations))
    }

    private func locked<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    // MARK: stop

    public var isStopping: Bool { locked { stopping } }

    public func stop() {
        locked {
            stopping = true
            condition.broadcast()
        }
    }

    /// Sleeps up to `millis` (after a database error), returning early on stop.
    public func idle(millis: Int64) {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(max(millis, 1)) / 1000)
        while !stopping, condition.wait(until: deadline) {}
    }

    // MARK: in-flight slots

    /// What a worker may do next, and for which destination (its index).
    public struct Turn: Equatable, Sendable {
        public enum Kind: Equatable, Sendable {
            case deliver
            /// The destination is paused; this worker sends one small batch to see whether it still is.
            case probe
            case wait
            case stop
        }

        public var kind: Kind
        public var destination: Int

        public static func deliver(_ destination: Int) -> Turn { Turn(kind: .deliver, destination: destination) }
        public static func probe(_ destination: Int) -> Turn { Turn(kind: .probe, destination: destination) }
        /// Destination 0 (a daemon with one destination).
        public static let deliver = Turn.deliver(0)
        public static let probe = Turn.probe(0)
        public static let wait = Turn(kind: .wait, destination: 0)
        public static let stop = Turn(kind: .stop, destination: 0)
    }

    /// Takes a slot for the next destination that may deliver (not paused, the limit allows,
    /// and — when its outbox looked empty — this worker's poll is due) or probe; otherwise
    /// waits, up to `waitMillis`, and says `.wait`. `hadWork`: this worker's last claim
    /// found rows (for destination `lastDestination`), so it skips the idle spacing there.
    public func nextTurn(now: UnixMillis, waitMillis: Int64, hadWork: Bool = false, lastDestination: Int = 0) -> Turn {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(max(waitMillis, 1)) / 1000)
        let count = destinations.count
        while true {
            if stopping { return .stop }
            var wakeAt = deadline
            let current = Date()
            for step in 0..<count {
                let d = (cursor + step) % count
                if destinations[d].pausedReason != nil {
                    if !destinations[d].probing, now >= destinations[d].nextProbeAt {
                        destinations[d].probing = true
                        inFlight += 1
                        cursor = (d + 1) % count
                        return .probe(d)
                    }
                    continue
                }
                guard inFlight < limit.current else { continue }
                if !destinations[d].idle || (hadWork && d == lastDestination) {
                    inFlight += 1
                    cursor = (d + 1) % count
                    return .deliver(d)
                }
                if current >= destinations[d].nextPollAt {
                    destinations[d].nextPollAt = current.addingTimeInterval(idlePollSeconds)  // this worker polls; the others sleep
                    inFlight += 1
                    cursor = (d + 1) % count
                    return .deliver(d)
                }
                wakeAt = min(wakeAt, destinations[d].nextPollAt)
            }
            if !condition.wait(until: wakeAt), wakeAt == deadline { return .wait }
        }
    }

    /// A worker's claim for `destination` found `rows` rows (0: nothing due there).
    public func claimed(rows: Int, destination: Int = 0) {
        locked {
            if rows == 0 {
                if !destinations[destination].idle {
                    destinations[destination].idle = true
                    destinations[destination].nextPollAt = Date().addingTimeInterval(idlePollSeconds)
                }
            } else if destinations[destination].idle {
                destinations[destination].idle = false
                condition.broadcast()  // there is work: wake the sleeping workers
            }
        }
    }

    /// New rows were inserted (a PostgreSQL notification): idle destinations are polled now.
    public func rowsArrived() {
        locked {
            for d in destinations.indices where destinations[d].idle { destinations[d].nextPollAt = .distantPast }
            condition.broadcast()
        }
    }

    public func endTurn(_ turn: Turn) {
        locked {
            inFlight -= 1
            if turn.kind == .probe { destinations[turn.destination].probing = false }
            condition.broadcast()
        }
    }

    // MARK: pause

    /// Why delivery to `destination` is paused, or `nil` while it delivers.
    public func paused(destination: Int) -> String? { locked { destinations[destination].pausedReason } }

    /// The pause reason of each destination (`nil`: delivering).
    public var pausedReasons: [String?] { locked { destinations.map(\.pausedReason) } }

    /// Why delivery is paused, when any destination is (with one destination: its reason).
    public var paused: String? { locked { destinations.lazy.compactMap(\.pausedReason).first } }

    /// Delivery to `destination` stops; one probe every `probeInterval`.
    public func pause(reason: String, probeAt: UnixMillis, destination: Int = 0) {
        locked {
            destinations[destination].pausedReason = reason
            destinations[destination].nextProbeAt = probeAt
        }
    }

    /// Probe the paused destinations now (a token file changed).
    public func probeSoon(destination: Int? = nil) {
        locked {
            for d in destinations.indices where destination == nil || destination == d { destinations[d].nextProbeAt = 0 }
            condition.broadcast()
        }
    }

    /// Returns true when this call lifted a pause of `destination`.
    @discardableResult
    public func resume(destination: Int = 0) -> Bool {
        locked {
            let was = destinations[destination].pausedReason != nil
            destinations[destination].pausedReason = nil
            condition.broadcast()
            return was
        }
    }

    // MARK: outcomes

    public var inFlightLimit: Int { locked { limit.current } }

    public func rateLimited() { locked { limit.rateLimited(); counters.rateLimited += 1 } }

    public func record(requests: Int = 0, delivered: Int = 0, skipped: Int = 0, dead: Int = 0, retried: Int = 0, released: Int = 0, now: UnixMillis) {
        locked {
            counters.requests += requests
            counters.delivered += delivered
            counters.skipped += skipped
            counters.dead += dead
            counters.retried += retried
            counters.released += released
            if delivered > 0 {
                for _ in 0..<requests { limit.succeeded() }
                deliveredTimes.append((now, delivered))
                if deliveredTimes.count > 4_096 { deliveredTimes.removeFirst(deliveredTimes.count - 2_048) }
            }
            condition.broadcast()
        }
    }

    public var snapshot: Counters { locked { counters } }

    /// Events delivered per second over the last minute.
    public func deliveryRate(now: UnixMillis) -> Double {
        locked {
            let since = now - 60_000
            let recent = deliveredTimes.filter { $0.at > since }
            guard let first = recent.first else { return 0 }
            let span = max(Double(now - min(first.at, now - 1_000)) / 1000, 1)
            return Double(recent.reduce(0) { $0 + $1.count }) / span
        }
    }
}
