/// Durations as operators write them: `500ms`, `90s`, `15m`, `24h`, `7d`, or combined (`1h30m`).
public enum Durations {
    /// The longest duration accepted: 100 years. Bounding it keeps every `now + duration`
    /// and `now - duration` far from Int64's limits.
    public static let maximumMillis: Int64 = 100 * 365 * 86_400_000

    /// Milliseconds, or `nil` for text that is not a duration or is longer than
    /// ``maximumMillis``.
    public static func parseMillis(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
        var rest = Substring(text.trimmingWhitespace())
        guard !rest.isEmpty else { return nil }
        var total: Int64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix { $0.isLetter }
            guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            let (product, overflow) = value.multipliedReportingOverflow(by: unit.1)
            guard !overflow, product <= maximumMillis else { return nil }
            total += product  // both ≤ maximumMillis: cannot overflow
            guard total <= maximumMillis else { return nil }
        }
        return total
    }

    /// A short human form: `350ms`, `42s`, `5m12s`, `3h4m`, `2d3h`.
    public static func format(millis: Int64) -> String {
        if millis < 0 { return "-" + format(millis: millis == .min ? .max : -millis) }
        if millis < 1_000 { return "\(millis)ms" }
        let s = millis / 1_000
        if s < 60 { return "\(s)s" }
        if s < 3_600 { return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m\(s % 60)s" }
        if s < 86_400 { return (s % 3_600) / 60 == 0 ? "\(s / 3_600)h" : "\(s / 3_600)h\((s % 3_600) / 60)m" }
        return (s % 86_400) / 3_600 == 0 ? "\(s / 86_400)d" : "\(s / 86_400)d\((s % 86_400) / 3_600)h"
    }
}
