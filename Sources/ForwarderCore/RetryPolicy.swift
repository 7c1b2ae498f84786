/// When a failed row is tried again, and when it is given up.
///
/// Schedule: after the n-th failed attempt the row waits a uniformly random time in
/// `0 ..< min(capMillis, baseMillis × 2^(n-1))` ("full jitter"), and never less than a
/// `Retry-After` TikTok sent. With the defaults (1 s base, 10 min cap) the ceilings run
/// 1 s, 2 s, 4 s, … 8.5 min, then 10 min: 30 attempts span roughly 2–4 hours.
///
/// A row is dead-lettered with its last error when
/// - it has used `maxAttempts` attempts (configuration errors consume none), or
/// - it is older than `maxAgeMillis` (counted from its insert time), or
/// - an earlier attempt may have reached TikTok (timeout or reset after the body was sent)
///   and the next try would land after TikTok's 48-hour deduplication window minus
///   `dedupWindowMarginMillis`: resending then could count the event twice, so it is dead
///   as "ambiguous delivery" for an operator to decide.
public struct RetryPolicy: Sendable, Equatable {
    public var baseMillis: Int64 = 1_000
    public var capMillis: Int64 = 600_000
    public var maxAttempts = 30
    public var maxAgeMillis: Int64 = 3 * 86_400_000
    /// TikTok deduplicates an event_id against the pixel for 48 hours.
    public static let dedupWindowMillis: Int64 = 48 * 3_600_000
    public var dedupWindowMarginMillis: Int64 = 2 * 3_600_000

    public init() {}

    public enum Decision: Sendable, Equatable {
        case retry(at: UnixMillis)
        case dead(reason: String)
    }

    /// The ceiling of the random delay after `attempts` failed attempts (≥ 1).
    public func ceilingMillis(afterAttempts attempts: Int) -> Int64 {
        let exponent = min(max(attempts - 1, 0), 40)
        let (raw, overflow) = baseMillis.multipliedReportingOverflow(by: Int64(1) << Int64(exponent))
        return overflow ? capMillis : min(capMillis, raw)
    }

    /// Decides a failed row's fate. `random` is uniform in 0..<1 (a parameter, so tests
    /// pin it); `firstSentAt` includes this attempt when it may have reached TikTok.
    public func decide(attempts: Int, createdAt: UnixMillis, firstSentAt: UnixMillis?, retryAfterMillis: Int64?,
                       lastError: String, now: UnixMillis, random: Double) -> Decision {
        if attempts >= maxAttempts {
            return .dead(reason: "gave up after \(attempts) attempts: \(lastError)")
        }
        if now.subtracting(saturating: createdAt) >= maxAgeMillis {
            return .dead(reason: "gave up: older than \(Durations.format(millis: maxAgeMillis)) after \(attempts) attempts: \(lastError)")
        }
        let jitter = Int64(checked: Double(ceilingMillis(afterAttempts: attempts)) * min(max(random.isNaN ? 0 : random, 0), 0.999_999)) ?? 0
        let delay = max(jitter, retryAfterMillis ?? 0)
        let at = now.adding(saturating: delay)
        if let firstSentAt, at >= firstSentAt.adding(saturating: Self.dedupWindowMillis - dedupWindowMarginMillis) {
            return .dead(reason: "ambiguous delivery: an attempt at \(firstSentAt) (unix ms) may have reached TikTok and its 48-hour deduplication window is closing; resending could count the event twice. Last error: \(lastError)")
        }
        return .retry(at: at)
    }
}

/// How many requests may be in flight: additive increase, multiplicative decrease.
///
/// Starts at `maximum`; each rate-limit answer halves it (never below 1); each delivered
/// request adds `1 / limit`, so it grows back by about one per round of requests.
public struct ConcurrencyLimit: Sendable, Equatable {
    public let maximum: Int
    public private(set) var value: Double

    public init(maximum: Int) {
        self.maximum = max(1, maximum)
        value = Double(self.maximum)
    }

    public var current: Int { max(1, Int(value)) }

    public mutating func rateLimited() {
        value = max(1, (value / 2).rounded(.down))
    }

    public mutating func succeeded() {
        value = min(Double(maximum), value + 1 / value)
    }
}
