/// How many lines of one kind may be logged per window: routine-but-notable events (a
/// skipped event, a dropped field) are each worth a line, but a flood of them must not drown
/// the journal. Pure: the caller passes the time.
public struct LogBudget: Sendable {
    public let linesPerWindow: Int
    public let windowMillis: Int64
    private var windowStart: UnixMillis = .min
    private var used = 0
    private var suppressed = 0

    public init(linesPerWindow: Int = 20, windowMillis: Int64 = 60_000) {
        self.linesPerWindow = linesPerWindow
        self.windowMillis = windowMillis
    }

    /// Whether to log this line, and how many lines the previous window held back (to be
    /// said once, when a new window opens).
    public mutating func take(now: UnixMillis) -> (log: Bool, heldBack: Int) {
        var heldBack = 0
        if now.subtracting(saturating: windowStart) >= windowMillis {
            heldBack = suppressed
            windowStart = now
            used = 0
            suppressed = 0
        }
        guard used < linesPerWindow else {
            suppressed += 1
            return (false, heldBack)
        }
        used += 1
        return (true, heldBack)
    }
}
