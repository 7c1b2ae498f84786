/// One line of NDJSON input to `enqueue` and `transform`.
public enum NDJSONLine {
    /// The event id of a source event line: its top-level `event_id`, else `context.event_id`
    /// (strings or numbers), or `nil` when it has none.
    public static func eventID(of event: JSON) -> String? {
        for path in [["event_id"], ["context", "event_id"]] {
            if let value = event.value(at: path), let text = Normalise.text(value) { return text }
        }
        return nil
    }

    /// Splits a buffer into lines (LF or CRLF), numbered from 1, leaving out blank lines.
    public static func lines(_ data: [UInt8]) -> [(number: Int, bytes: ArraySlice<UInt8>)] {
        var result: [(Int, ArraySlice<UInt8>)] = []
        var start = 0
        var number = 0
        for i in 0...data.count where i == data.count || data[i] == 0x0A {
            number += 1
            var end = i
            if end > start, data[end - 1] == 0x0D { end -= 1 }
            let line = data[start..<end]
            if line.contains(where: { $0 != 0x20 && $0 != 0x09 }) { result.append((number, line)) }
            start = i + 1
        }
        return result
    }
}
