/// Why a row is dead, as a short stable code: for `dead list --reason`, metrics labels and
/// alerts (free text would make a label value per message). Decided from the row's
/// `last_error`, whose prefixes the daemon writes (see BatchDeliverer and RetryPolicy).
public enum DeadReason: String, Sendable, CaseIterable {
    /// The transform refused the payload (not JSON, no event_name, expired, no page URL…).
    case transform
    /// TikTok refused the event (40002).
    case rejected
    /// Retried `max_attempts` times.
    case gaveUp = "gave_up"
    /// Older than `delivery.max_age`.
    case tooOld = "too_old"
    /// An attempt may have reached TikTok and its deduplication window is closing.
    case ambiguous
    /// Its claims ended without a result `max_attempts` times (it crashed or hung the daemon).
    case crashed
    /// `event_id` is not valid UTF-8.
    case invalidEventID = "invalid_event_id"
    /// Its `destination` names no configured destination (redrive once it is configured).
    case unknownDestination = "unknown_destination"
    /// Anything else (rows dead-lettered by hand, older versions' texts).
    case other

    public static func of(error: String?) -> DeadReason {
        guard let error else { return .other }
        if error.hasPrefix("rejected by the transform") { return .transform }
        if error.hasPrefix("TikTok rejected") { return .rejected }
        if error.hasPrefix("ambiguous delivery") { return .ambiguous }
        if error.hasPrefix("gave up: older") { return .tooOld }
        if error.hasPrefix("event_id is not valid UTF-8") { return .invalidEventID }
        if error.hasPrefix("gave up after"), error.contains(" claims ") { return .crashed }
        if error.hasPrefix("destination '"), error.contains("' is not configured") { return .unknownDestination }
        if error.hasPrefix("gave up after") { return .gaveUp }
        return .other
    }
}
