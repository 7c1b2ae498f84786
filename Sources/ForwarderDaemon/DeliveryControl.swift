import ForwarderCore
import Foundation

/// What the worker threads share: stop and pause, the in-flight limit (AIMD), idle polling,
/// counters.
///
/// One lock; every wait is bounded so a stop request is noticed within a linger.
///
/// Idle is idle: once a claim finds nothing, at most one worker polls the outbox per
/// `linger` and the others sleep until that poll finds rows (or a stop, pause or resume),
/// so an empty outbox costs one cheap read every `linger` instead of workers waking each
/// other. A worker whose last claim found rows claims again at once.
public final class DeliveryControl: @unchecked Sendable {
    private let condition = NSCondition()
    private var limit: ConcurrencyLimit
    private var inFlight = 0
    private var stopping = false
    private var pausedReason: String?
    private var nextProbeAt: UnixMillis = 0
    private var probing = false
    private var counters = Counters()
    private var deliveredTimes: [(at: UnixMillis, count: Int)] = []
    private let lingerSeconds: Double
    /// The last claim found nothing: polls are spaced by `linger` until one finds rows.
    private var idleSince: Date?
    private var nextPollAt = Date.distantPast

    public struct Counters: Sendable, Equatable {
        public var delivered = 0
        public var skipped = 0
        public var dead = 0
        public var retried = 0
        public var requests = 0
        public var rateLimited = 0
        public var released = 0
    }

    public init(maxInFlight: Int, lingerMillis: Int64 = 50) {
        limit = ConcurrencyLimit(maximum: maxInFlight)
        lingerSeconds = Double(max(lingerMillis, 1)) / 1000
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

    /// What a worker may do next.
    public enum Turn: Equatable {
        case deliver
        /// Delivery is paused; this worker sends one small batch to see whether it still is.
        case probe
        case wait
        case stop
    }

    /// Takes a slot when the limit allows, delivery is not paused and (when the outbox looked
    /// empty) this worker's poll is due; otherwise waits, up to `waitMillis`, and says
    /// `.wait`. `hadWork`: this worker's last claim found rows, so it skips the idle spacing.
    public func nextTurn(now: UnixMillis, waitMillis: Int64, hadWork: Bool = false) -> Turn {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(max(waitMillis, 1)) / 1000)
        while true {
            if stopping { return .stop }
            var wakeAt = deadline
            if pausedReason != nil {
                if !probing, now >= nextProbeAt {
                    probing = true
                    inFlight += 1
                    return .probe
                }
            } else if inFlight < limit.current {
                if idleSince == nil || hadWork {
                    inFlight += 1
                    return .deliver
                }
                let current = Date()
                if current >= nextPollAt {
                    nextPollAt = current.addingTimeInterval(lingerSeconds)  // this worker polls; the others sleep
                    inFlight += 1
                    return .deliver
                }
                wakeAt = min(deadline, nextPollAt)
            }
            if !condition.wait(until: wakeAt), wakeAt == deadline { return .wait }
        }
    }

    /// A worker's claim found `rows` rows (0: the outbox has nothing due).
    public func claimed(rows: Int) {
        locked {
            if rows == 0 {
                if idleSince == nil {
                    idleSince = Date()
                    nextPollAt = Date().addingTimeInterval(lingerSeconds)
                }
            } else if idleSince != nil {
                idleSince = nil
                condition.broadcast()  // there is work: wake the sleeping workers
            }
        }
    }

    public func endTurn(_ turn: Turn) {
        locked {
            inFlight -= 1
            if turn == .probe { probing = false }
            condition.broadcast()
        }
    }

    // MARK: pause

    public var paused: String? { locked { pausedReason } }

    /// Delivery stops; one probe every `probeInterval`.
    public func pause(reason: String, probeAt: UnixMillis) {
        locked {
            pausedReason = reason
            nextProbeAt = probeAt
        }
    }

    /// Probe now (the token file changed).
    public func probeSoon() {
        locked {
            nextProbeAt = 0
            condition.broadcast()
        }
    }

    /// Returns true when this call lifted a pause.
    @discardableResult
    public func resume() -> Bool {
        locked {
            let was = pausedReason != nil
            pausedReason = nil
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
