// libFuzzer target: the JSON parser, its event-id skim and the whole transform-and-hash
// pipeline on arbitrary payload bytes (built and run by scripts/fuzz).
import ForwarderCore

private let settings: TransformSettings = {
    var s = TransformSettings()
    s.defaultPhoneCountryCode = "33"
    return s
}()
private let transformer = Transformer(settings: settings)
/// Configured paths through arrays (digits as `Int(_:)` reads them), paths that are prefixes
/// of others, and a per-event plan: the one-walk path index against the tree's lookups.
private let configured: Transformer = {
    var s = settings
    s.customFields = [
        CustomField(object: .properties, key: "second_id", source: .paths([["items", "1", "id"], ["items", "01", "product", "id"]])),
        CustomField(object: .properties, key: "nested", source: .paths([["a", "0", "b"], ["a", "0"], ["a"]])),
        CustomField(object: .user, key: "first", source: .paths([["items", "+0", "id"]]), hashed: true),
    ]
    s.mapping[.orderID] = .paths([["items", "0", "product", "id"], ["id"]])
    var purchase = EventOverride()
    purchase.mapping[.userEmail] = .paths([["a", "1"], ["user", "email"]])
    s.eventOverrides["purchase"] = purchase
    return Transformer(settings: s)
}()
private let now: Int64 = 1_795_000_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTransform(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The skim that validates enqueue lines must agree with the full parser.
    let full = try? JSONParser.parse(bytes)
    let skim = bytes.withUnsafeBufferPointer { try? JSONParser.eventID($0) }
    if (full == nil) != (skim == nil) { fatalError("skim and parser disagree on \(size) bytes") }
    // Any bytes, any insert time: the transform must return an outcome, never trap.
    for inserted in [now - 5_000, Int64.min, Int64.max] as [Int64?] {
        let outcome = transformer.transform(payload: bytes, eventID: "fuzz-1", insertedAtMillis: inserted, nowMillis: now)
        // The daemon's in-place reader (JSONTape) and the document tree must agree exactly.
        if let full {
            let tree = transformer.transform(source: full, eventID: "fuzz-1", insertedAtMillis: inserted, nowMillis: now)
            if tree != outcome { fatalError("tape and tree disagree on \(size) bytes") }
        } else if case .rejected(let reason) = outcome, reason.hasPrefix("payload is not JSON") {
        } else {
            fatalError("the tape accepted \(size) bytes the parser refuses")
        }
        if case .event(let event, _) = outcome {
            var writer = JSONWriter(capacity: 512)
            event.encode(into: &writer)
            if (try? JSONParser.parse(writer.bytes)) == nil { fatalError("the transform wrote invalid JSON") }
        }
    }
    if let full {
        let tape = configured.transform(payload: bytes, eventID: "fuzz-2", insertedAtMillis: now, nowMillis: now)
        if tape != configured.transform(source: full, eventID: "fuzz-2", insertedAtMillis: now, nowMillis: now) {
            fatalError("tape and tree disagree on \(size) bytes with configured paths")
        }
    }
    if let text = String(validating: bytes, as: UTF8.self) {
        _ = Durations.parseMillis(text)
        _ = EventTime.fromISO8601(text)
        _ = SafeText.escapingControls(text)
    }
    return 0
}
