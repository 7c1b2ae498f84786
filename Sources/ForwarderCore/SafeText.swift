/// Text that is printed (logs, terminals) or stored (dead-letter reasons) made safe to show.
public enum SafeText {
    /// Control characters (C0, DEL, C1) and the Unicode line separators escaped as `\u{1B}`,
    /// so that an event id or a peer's message cannot forge log lines or drive a terminal
    /// (`ESC [ …`). Everything else is kept as it is; text without controls is returned as is.
    public static func escapingControls(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    @inlinable static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
    }

    /// `text` with every occurrence of `secret` replaced by `[redacted]`: for anything a peer
    /// sent back (an error body may echo the request's headers) before it is logged or stored.
    public static func redacting(_ secret: String, in text: String) -> String {
        guard secret.utf8.count >= 4, text.utf8.count >= secret.utf8.count else { return text }
        // Byte search: String.replacing would compare by grapheme clusters and be slow.
        let s = Array(secret.utf8), t = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(t.count)
        var i = 0
        var replaced = false
        while i < t.count {
            if t[i] == s[0], i + s.count <= t.count, t[i..<(i + s.count)].elementsEqual(s) {
                out += Array("[redacted]".utf8)
                i += s.count
                replaced = true
            } else {
                out.append(t[i])
                i += 1
            }
        }
        return replaced ? String(decoding: out, as: UTF8.self) : text
    }
}
