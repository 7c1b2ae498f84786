/// Arithmetic on values that come from producers, operators or configuration: it clamps or
/// refuses, and never traps. A row or a setting, however hostile, must not crash the daemon.
extension Int64 {
    /// `self + other`, clamped to Int64's range.
    @inlinable public func adding(saturating other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, clamped to Int64's range.
    @inlinable public func subtracting(saturating other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }

    /// `self × other`, clamped to Int64's range.
    @inlinable public func multiplied(saturating other: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
    }

    /// `value` truncated toward zero, or `nil` when it is NaN, infinite or outside Int64's
    /// range (where `Int64(value)` would trap).
    @inlinable public init?(checked value: Double) {
        // 2^63 is exactly representable; every double below it (and ≥ -2^63) converts.
        guard value.isFinite, value < 9_223_372_036_854_775_808.0, value >= -9_223_372_036_854_775_808.0 else { return nil }
        self.init(value)
    }
}
