/// Checks a track request the way TikTok does, for the sandbox. The first problem found is
/// returned as TikTok words it: `data.3.event_id: not a valid string`.
public enum TrackRequestValidator {
    public static let eventSources: Set<String> = ["web", "app", "offline", "crm"]

    /// `nil` when the request is valid.
    public static func firstProblem(in request: JSON) -> String? {
        guard case .object = request else { return "request body: not a JSON object" }
        guard let source = request["event_source"]?.stringValue, eventSources.contains(source) else {
            return "event_source: must be one of web, app, offline, crm"
        }
        guard let pixel = request["event_source_id"]?.stringValue, !pixel.isEmpty else {
            return "event_source_id: not a valid string"
        }
        let kind = EventSource(rawValue: source)!
        guard kind.accepts(id: pixel) else {
            return "event_source_id: Invalid value for event_source_id (\(source) events take a \(kind.idName)\(kind == .web ? ", not a number" : ", a number"))"
        }
        if let code = request["test_event_code"], code != .null, code.stringValue == nil {
            return "test_event_code: not a valid string"
        }
        if let partner = request["partner_name"], partner.stringValue?.isEmpty ?? true {
            return "partner_name: not a valid string"
        }
        guard case .array(let events)? = request["data"] else { return "data: must be an array" }
        guard !events.isEmpty else { return "data: must contain at least 1 event" }
        guard events.count <= TrackRequest.maximumEvents else { return "data: must contain at most 1000 events" }
        for (i, event) in events.enumerated() {
            if let problem = problem(inEvent: event, source: kind) { return "data.\(i).\(problem)" }
        }
        return nil
    }

    private static func problem(inEvent event: JSON, source: EventSource) -> String? {
        let web = source == .web
        guard case .object = event else { return "event: not an object" }
        guard let name = event["event"]?.stringValue, !name.trimmingWhitespace().isEmpty else { return "event: not a valid string" }
        if source == .offline, !EventNamePreset.standardNames.contains(name) { return "event: offline events take standard event names only" }
        if source == .crm, EventNamePreset.standardNames.contains(name) { return "event: CRM events take custom event names only" }
        if let problem = sourceObjectsProblem(event, source: source) { return problem }
        guard case .number(let time)? = event["event_time"], let seconds = Int64(time), seconds > 0, seconds < 100_000_000_000 else {
            return "event_time: must be an integer Unix time in seconds"
        }
        guard let id = event["event_id"] else { return "event_id: required" }
        guard case .string(let idText) = id, !idText.isEmpty else { return "event_id: not a valid string" }
        if let user = event["user"] {
            guard case .object(let fields) = user else { return "user: not an object" }
            for key in ["email", "phone", "external_id"] {
                guard let value = fields[key] else { continue }
                let values: [JSON]
                if case .array(let array) = value { values = array } else { values = [value] }
                for v in values {
                    guard let s = v.stringValue, s.utf8.count == 64,
                          s.utf8.allSatisfy({ Normalise.isDigit($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }) else {
                        return "user.\(key): must be a SHA-256 hash (64 lowercase hex characters)"
                    }
                }
            }
            for key in ["ttp", "ttclid", "ip", "user_agent", "locale", "idfa", "idfv", "gaid", "att_status"] {
                if let v = fields[key], v.stringValue == nil { return "user.\(key): not a valid string" }
            }
            if !web, fields["ttp"] != nil || fields["ttclid"] != nil { return "user.\(fields["ttp"] != nil ? "ttp" : "ttclid"): only for web events" }
            if source != .app, let key = ["idfa", "idfv", "gaid", "att_status"].first(where: { fields[$0] != nil }) { return "user.\(key): only for app events" }
            for (key, upper) in [("idfa", true), ("gaid", false)] {
                guard let id = fields[key]?.stringValue else { continue }
                let hashed = id.utf8.count == 64 && id.utf8.allSatisfy { Normalise.isDigit($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
                guard hashed || Normalise.advertisingID(id, uppercase: upper) == id else {
                    return "user.\(key): must be a device id (\(upper ? "upper" : "lower")case UUID) or its SHA-256"
                }
            }
            if let status = fields["att_status"]?.stringValue, !["AUTHORIZED", "DENIED", "NOT_DETERMINED", "RESTRICTED", "NOT_APPLICABLE"].contains(status) {
                return "user.att_status: must be AUTHORIZED, DENIED, NOT_DETERMINED, RESTRICTED or NOT_APPLICABLE"
            }
        }
        if web {
            guard let url = event["page"]?["url"]?.stringValue, !url.isEmpty else { return "page.url: required for web events" }
        }
        if let properties = event["properties"] {
            guard case .object = properties else { return "properties: not an object" }
            for key in ["order_id", "shop_id", "content_type", "description", "status", "search_string", "query"] {
                if let v = properties[key], v.stringValue == nil { return "properties.\(key): not a valid string" }
            }
            if let currency = properties["currency"] {
                guard let code = currency.stringValue, Currency.isSupported(code) else { return "properties.currency: not a supported currency" }
            }
            for key in ["value", "num_items"] {
                if let v = properties[key], case .number = v {} else if properties[key] != nil { return "properties.\(key): not a valid number" }
            }
            if let ids = properties["content_ids"] {
                guard case .array(let array) = ids, array.allSatisfy({ $0.stringValue != nil }) else { return "properties.content_ids: must be an array of strings" }
            }
            if let contents = properties["contents"] {
                guard case .array(let items) = contents else { return "properties.contents: must be an array" }
                for (k, item) in items.enumerated() {
                    if let v = item["content_id"], v.stringValue == nil { return "properties.contents.\(k).content_id: not a valid string" }
                    if let v = item["price"], case .number = v {} else if item["price"] != nil { return "properties.contents.\(k).price: not a valid number" }
                    if let v = item["content_type"], v.stringValue.map({ ContentType(rawValue: $0) == nil }) ?? true {
                        return "properties.contents.\(k).content_type: must be product or product_group"
                    }
                    if let v = item["quantity"] {
                        guard case .number(let q) = v, Int64(q) != nil else { return "properties.contents.\(k).quantity: not a valid integer" }
                    }
                }
            }
        }
        if let ldu = event["limited_data_use"], case .bool = ldu {} else if event["limited_data_use"] != nil { return "limited_data_use: not a boolean" }
        return nil
    }

    /// The `app`, `ad` and `lead` objects: each only for its source, with its required id.
    private static func sourceObjectsProblem(_ event: JSON, source: EventSource) -> String? {
        for (key, owner) in [("app", EventSource.app), ("ad", .app), ("lead", .crm)] {
            guard let object = event[key] else {
                if source == owner, key == "app" { return "app.app_id: required for app events" }
                if source == owner, key == "lead" { return "lead.lead_id: required for CRM events" }
                continue
            }
            guard source == owner else { return "\(key): only for \(owner == .app ? "app" : "CRM") events" }
            guard case .object(let fields) = object else { return "\(key): not an object" }
            for (field, value) in zip(fields.keys, fields.values) {
                let boolean = key == "ad" && (field == "is_retargeting" || field == "attributed")
                if boolean { if case .bool = value { continue } else { return "ad.\(field): not a boolean" } }
                if value.stringValue == nil { return "\(key).\(field): not a valid string" }
            }
            if key == "app", fields["app_id"]?.stringValue?.isEmpty ?? true { return "app.app_id: required for app events" }
            if key == "lead", fields["lead_id"]?.stringValue?.isEmpty ?? true { return "lead.lead_id: required for CRM events" }
        }
        if source != .web, event["page"] != nil, source == .app { return "page: not used by app events" }
        return nil
    }

    /// Counts the events in a request's `data` array without building any values: the
    /// sandbox's `--count-only` mode, so benchmarks measure the forwarder, not the sandbox.
    public static func countEvents(_ body: UnsafeRawBufferPointer) -> Int {
        var depth = 0
        var inString = false
        var escaped = false
        var lastKey: (start: Int, end: Int)?
        var stringStart = 0
        var dataDepth = -1
        var count = 0
        var sawElement = false
        for i in 0..<body.count {
            let b = body[i]
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") {
                    inString = false
                    if depth == 1 { lastKey = (stringStart, i) }
                }
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                inString = true
                stringStart = i + 1
                if depth == dataDepth + 1 && dataDepth >= 0 { sawElement = true }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                if depth == 1, b == UInt8(ascii: "["), let key = lastKey, key.end - key.start == 4,
                   body[key.start] == UInt8(ascii: "d"), body[key.start + 1] == UInt8(ascii: "a"),
                   body[key.start + 2] == UInt8(ascii: "t"), body[key.start + 3] == UInt8(ascii: "a") {
                    dataDepth = depth
                } else if dataDepth >= 0, depth == dataDepth + 1 {
                    sawElement = true
                }
                depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
                if depth == dataDepth, dataDepth >= 0 {
                    return count + (sawElement ? 1 : 0)
                }
            case UInt8(ascii: ","):
                if dataDepth >= 0, depth == dataDepth + 1 { count += 1 }
            case UInt8(ascii: " "), 0x0A, 0x0D, 0x09:
                break
            default:
                if dataDepth >= 0, depth == dataDepth + 1 { sawElement = true }
            }
        }
        return 0
    }
}
