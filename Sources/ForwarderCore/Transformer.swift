/// What became of one source event.
public enum TransformOutcome: Sendable, Equatable {
    /// Ready to send. `warnings` name optional fields that were dropped as invalid.
    case event(TikTokEvent, warnings: [String])
    /// Deliberately not sent (an unmapped event name): not an error.
    case skipped(reason: String)
    /// Can never be sent: dead-letter it with `reason`.
    case rejected(reason: String)
}

/// Turns Commanders Act source events into TikTok Events API 2.0 events.
///
/// Pure: no I/O, no clock. The row's insert time and the current time are parameters.
/// Reasons and warnings name fields and problems, never the values of user fields.
/// Not thread-safe (it owns a reusable SHA-256 context): give each worker its own.
public final class Transformer {
    public let settings: TransformSettings
    private let hasher = SHA256Hasher()

    /// Where each field comes from, for the events of one source event name. A class: it is
    /// passed to every resolution, and a reference costs one retain where a struct of three
    /// members costs three.
    private final class Plan {
        var sources: [TargetField: FieldSource] { didSet { ordered = Self.order(sources) } }
        /// ``sources`` by ``TargetField/ordinal``: the hot path's lookups index an array
        /// instead of hashing (~3 % of a transform).
        private(set) var ordered: ContiguousArray<FieldSource>
        var customFields: [CustomField]
        /// IDFA and GAID fall back to `context.device.advertising_id` while not re-mapped.
        var advertisingIDFallback: Bool
        /// The item fields are the defaults: read them with direct lookups (the hot path).
        var defaultItemFields: Bool
        /// Each field's paths' slots in the transformer's ``PathIndex``, in the order of the
        /// paths (-1 for the item fields: their paths start at an item), in one flat table
        /// for the hot path (no inner array to retain): field `n`'s slots are
        /// `slotTable[slotStart[n] ..< slotStart[n + 1]]`. Written only while the transformer
        /// is built, so reads skip the runtime's exclusivity check (~700 instructions per event).
        @exclusivity(unchecked) private(set) var slotTable: ContiguousArray<Int32> = []
        @exclusivity(unchecked) private(set) var slotStart: ContiguousArray<Int32> = [0]
        /// The same for ``customFields``.
        var customSlots: [[Int32]] = []

        init(sources: [TargetField: FieldSource], customFields: [CustomField], advertisingIDFallback: Bool) {
            self.sources = sources
            ordered = Self.order(sources)
            self.customFields = customFields
            self.advertisingIDFallback = advertisingIDFallback
            defaultItemFields = TargetField.allCases.filter(\.isItemField).allSatisfy { sources[$0] == .paths($0.defaultPaths) }
        }

        private static func order(_ sources: [TargetField: FieldSource]) -> ContiguousArray<FieldSource> {
            ContiguousArray(TargetField.allCases.map { sources[$0] ?? .paths($0.defaultPaths) })
        }

        subscript(field: TargetField) -> FieldSource { ordered[field.ordinal] }

        /// Sets the slots: one list per ``TargetField``, by ordinal.
        func setSlots(_ lists: [[Int32]]) {
            slotTable = ContiguousArray(lists.joined())
            slotStart = [0]
            for list in lists { slotStart.append(slotStart.last! + Int32(list.count)) }
        }

        func copy() -> Plan { Plan(sources: sources, customFields: customFields, advertisingIDFallback: advertisingIDFallback) }
    }

    private let basePlan: Plan
    /// Plans of the event names with per-event overrides (`transform.events.NAME.map`).
    private let eventPlans: [String: Plan]

    /// Every path read from the top of an event (all plans' fields, and the fixed paths
    /// below), located in one walk over each payload's tape.
    private let index: PathIndex
    /// What ``index`` located in the current payload, reused from event to event.
    private var located: [Int32] = []
    /// Slots of the fixed paths.
    private let eventNameSlot: Int32, eventSourceSlot: Int32, contextAppSlot: Int32
    private let cookieObjectSlots: [Int32], cookieHeaderSlots: [Int32]

    private static let eventNamePath = ["event_name"], eventSourcePath = ["partners", "tiktok", "event_source"], contextAppPath = ["context", "app"]

    public init(settings: TransformSettings = TransformSettings()) {
        self.settings = settings
        let base = Plan(sources: Dictionary(uniqueKeysWithValues: TargetField.allCases.map { ($0, settings.source(for: $0)) }),
                        customFields: settings.customFields,
                        advertisingIDFallback: settings.mapping[.userIDFA] == nil && settings.mapping[.userGAID] == nil)
        basePlan = base
        eventPlans = settings.eventOverrides.mapValues { override in
            let plan = base.copy()
            plan.sources.merge(override.mapping) { _, new in new }
            plan.defaultItemFields = TargetField.allCases.filter(\.isItemField).allSatisfy { plan.sources[$0] == .paths($0.defaultPaths) }
            for custom in override.customFields {
                plan.customFields.removeAll { $0.object == custom.object && $0.key == custom.key }
                plan.customFields.append(custom)
            }
            if override.mapping[.userIDFA] != nil || override.mapping[.userGAID] != nil { plan.advertisingIDFallback = false }
            return plan
        }
        var builder = PathIndex.Builder()
        for plan in [base] + eventPlans.values {
            plan.setSlots(TargetField.allCases.map { field in
                plan[field].paths.map { field.isItemField ? -1 : builder.slot(for: $0) }
            })
            plan.customSlots = plan.customFields.map { $0.source.paths.map { builder.slot(for: $0) } }
        }
        eventNameSlot = builder.slot(for: Self.eventNamePath)
        eventSourceSlot = builder.slot(for: Self.eventSourcePath)
        contextAppSlot = builder.slot(for: Self.contextAppPath)
        cookieObjectSlots = Cookies.objectPaths.map { builder.slot(for: $0) }
        cookieHeaderSlots = Cookies.headerPaths.map { builder.slot(for: $0) }
        index = builder.build()
    }

    /// Transforms one outbox payload.
    ///
    /// - Parameters:
    ///   - payload: the row's `payload` column, UTF-8 JSON.
    ///   - eventID: the row's `event_id`, sent as TikTok's deduplication key.
    ///   - insertedAtMillis: the row's insert time (Unix ms); the event time when the
    ///     payload carries none.
    ///   - nowMillis: the current time (Unix ms), for the maximum-age check.
    public func transform(payload: [UInt8], eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        payload.withUnsafeBufferPointer { bytes in
            let nodes: UnsafeBufferPointer<JSONTape.Node>
            do throws(JSONParseError) {
                nodes = try JSONParser.tape(bytes, into: tapeNodes)
            } catch {
                return .rejected(reason: "payload is not JSON (\(error.description))")
            }
            return withExtendedLifetime(tapeNodes) {
                let document = JSONTape.View(bytes: bytes, nodes: nodes, index: 0)
                index.locate(document, into: &located)
                return located.withUnsafeBufferPointer { located in
                    var view = document
                    view.located = located
                    return transform(view, eventID: eventID, insertedAtMillis: insertedAtMillis, nowMillis: nowMillis)
                }
            }
        }
    }

    /// The payload's nodes (see ``JSONTape``), reused from event to event.
    private let tapeNodes = JSONTape.Nodes()

    public func transform(payload: String, eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        transform(payload: Array(payload.utf8), eventID: eventID, insertedAtMillis: insertedAtMillis, nowMillis: nowMillis)
    }

    /// The event source `source` goes out as: the configured one, or by autodiscovery
    /// (`partners.tiktok.event_source`, else `app` for a non-empty `context.app`, else `web`).
    public func eventSource(of source: JSON) -> EventSource { eventSource(in: source) }

    private func eventSource<S: PathReadable>(in source: S) -> EventSource {
        if let fixed = settings.eventSource.fixed { return fixed }
        if let named = source.document(at: Self.eventSourcePath, slot: eventSourceSlot)?.text,
           let chosen = EventSource(rawValue: named.lowercased()) {
            return chosen
        }
        if let app = source.document(at: Self.contextAppPath, slot: contextAppSlot), app.isObject, app.isPresent { return .app }
        return .web
    }

    public func transform(source: JSON, eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        transform(source, eventID: eventID, insertedAtMillis: insertedAtMillis, nowMillis: nowMillis)
    }

    private func transform<S: PathReadable>(_ source: S, eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        guard source.isObject else { return .rejected(reason: "payload is not a JSON object") }
        guard let rawName = source.document(at: Self.eventNamePath, slot: eventNameSlot)?.json else { return .rejected(reason: "payload has no event_name") }
        guard case .string(let nameText) = rawName else { return .rejected(reason: "event_name is not a string") }
        let sourceName = nameText.trimmingWhitespace()
        guard !sourceName.isEmpty else { return .rejected(reason: "event_name is empty") }
        let trimmedID = eventID.trimmingWhitespace()
        guard !trimmedID.isEmpty else { return .rejected(reason: "event_id is empty") }
        var quotedName: String { "'\(String(sourceName.prefix(64)))'" }  // for reasons only: made when one is
        if settings.eventNames[sourceName] == TransformSettings.doNotSend {
            return .skipped(reason: "event name \(quotedName) is mapped to nothing (transform.events: false)")
        }
        let eventSource = eventSource(in: source)
        guard let eventName = settings.tiktokName(for: sourceName, source: eventSource) else {
            if settings.viewContent != nil, ViewContentChoice.sourceNames.contains(sourceName) {
                return .skipped(reason: "event name \(quotedName) is not sent as ViewContent (transform.view_content: \(settings.viewContent!.rawValue))")
            }
            return .skipped(reason: "event name \(quotedName) has no TikTok mapping")
        }
        switch eventSource {
        case .offline where !EventNamePreset.standardNames.contains(eventName):
            return .rejected(reason: "offline events take TikTok's standard event names only; \(quotedName) became '\(String(eventName.prefix(64)))' (map it in transform.events)")
        case .crm where EventNamePreset.standardNames.contains(eventName):
            return .rejected(reason: "CRM events take custom event names only; \(quotedName) became the standard name '\(eventName)' (map it in transform.events)")
        default:
            break
        }
        let plan = eventPlans[sourceName] ?? basePlan

        var warnings: [String] = []

        // event_time: the time the event happened, never the time it is sent.
        var eventTime: Int64?
        if let raw = resolve(.eventTime, in: source, plan) {
            eventTime = EventTime.seconds(from: raw)
            if eventTime == nil {
                warnings.append("event_time: not a Unix time or ISO 8601 date-time with offset; used the insert time")
            }
        }
        if eventTime == nil, let inserted = insertedAtMillis { eventTime = inserted / 1000 }
        guard let eventTime else { return .rejected(reason: "no usable event_time and no insert time") }
        let age = (nowMillis / 1000).subtracting(saturating: eventTime)
        if age > settings.maxEventAgeSeconds {
            return .rejected(reason: "expired: event_time is \(age / 3600) h old, older than the maximum age of \(settings.maxEventAgeSeconds / 3600) h")
        }

        var event = TikTokEvent(event: eventName, eventTime: eventTime, eventID: trimmedID)
        event.source = eventSource
        if let rejection = fill(&event, from: source, plan, warnings: &warnings) { return rejection }
        return .event(event, warnings: warnings)
    }

    /// The event's fields after its name, time, id and source: nil, or why it is rejected.
    /// A function of its own, so the event is built in place and moved into the outcome
    /// (built in the transform itself, it was copied into it: ~4k instructions per event).
    private func fill<S: PathReadable>(_ event: inout TikTokEvent, from source: S, _ plan: Plan, warnings: inout [String]) -> TransformOutcome? {
        let eventSource = event.source

        if eventSource == .web {
            // page.url is required for web events; page, ttp and ttclid are web-only.
            guard let pageURL = resolveText(.pageURL, in: source, plan) ?? settings.defaultPageURL else {
                return .rejected(reason: "no page URL (TikTok requires page.url for web events; set default_page_url)")
            }
            event.page.url = pageURL
            event.page.referrer = resolveText(.pageReferrer, in: source, plan)
            event.user.ttp = resolveText(.userTTP, in: source, plan)
                ?? Cookies.value(Cookies.ttp, in: source, objectSlots: cookieObjectSlots, headerSlots: cookieHeaderSlots)
            event.user.ttclid = resolveText(.userTTCLID, in: source, plan)
                ?? Cookies.value(Cookies.ttclid, in: source, objectSlots: cookieObjectSlots, headerSlots: cookieHeaderSlots)
                ?? URLQuery.value(named: "ttclid", in: pageURL)  // not event.page.url: the closure would copy the event
        }

        // user: hashed matching keys.
        event.user.emails = hashedValues(.userEmail, in: source, plan, warnings: &warnings, ascii: .email, normalise: Normalise.email)
        event.user.phones = hashedValues(.userPhone, in: source, plan, warnings: &warnings) { [settings] in
            Normalise.phone($0, defaultCountryCode: settings.defaultPhoneCountryCode)
        }
        let lowercaseID = settings.lowercaseExternalID
        event.user.externalIDs = hashedValues(.userExternalID, in: source, plan, warnings: &warnings, ascii: lowercaseID ? .lowercased : .asIs) {
            lowercaseID ? $0.lowercased() : $0
        }

        // user: keys sent as they are.
        if let ip = resolveText(.userIP, in: source, plan) {
            if Normalise.isIPAddress(ip) { event.user.ip = ip } else { warnings.append("user.ip: not an IPv4 or IPv6 address; dropped") }
        }
        event.user.userAgent = resolveText(.userAgent, in: source, plan)
        event.user.locale = resolveText(.userLocale, in: source, plan).map { $0.replacingUnderscores() }

        switch eventSource {
        case .app:
            fillApp(&event, from: source, plan, warnings: &warnings)
            guard event.app.appID != nil else {
                return .rejected(reason: "no app id (TikTok requires app.app_id for app events: context.app.namespace, or map app.app_id)")
            }
        case .crm:
            event.lead.leadID = resolveText(.leadID, in: source, plan)
            event.lead.leadEventSource = resolveText(.leadEventSource, in: source, plan)
            guard event.lead.leadID != nil else {
                return .rejected(reason: "no lead id (TikTok requires lead.lead_id for CRM events: lead_id, properties.lead_id, or map lead.lead_id)")
            }
        case .web, .offline: break
        }

        // properties
        // The items are read in place (each item's fields looked up in the payload), unless
        // they come from a configured constant.
        if let items = firstAlongPaths(.contents, in: source, plan, { $0.presentValue }) {
            if let elements = items.arrayElements {
                fillContents(from: elements, plan, into: &event.properties, warnings: &warnings)
            } else {
                warnings.append("properties.contents: items is not an array; dropped")
            }
        } else if let constant = plan[.contents].constant, Normalise.isPresent(constant) {
            if case .array(let elements) = constant {
                fillContents(from: elements, plan, into: &event.properties, warnings: &warnings)
            } else {
                warnings.append("properties.contents: items is not an array; dropped")
            }
        }
        if let type = resolveText(.contentType, in: source, plan) {
            if let known = ContentType(rawValue: type) {
                event.properties.contentType = known.rawValue
            } else {
                warnings.append("properties.content_type: '\(String(type.prefix(32)))' is neither product nor product_group; used \(settings.contentType.rawValue)")
            }
        }
        // Not `a || b` on the event: its autoclosure would capture the event, and the event
        // would then be copied into the outcome instead of moved (~4k instructions).
        let hasContents = !event.properties.contents.isEmpty
        let hasContentIDs = !event.properties.contentIDs.isEmpty
        if event.properties.contentType == nil, hasContents || hasContentIDs {
            event.properties.contentType = settings.contentType.rawValue
        }
        if let currency = resolveText(.currency, in: source, plan) {
            let code = currency.uppercased()
            if Currency.isSupported(code) {
                event.properties.currency = code
            } else {
                warnings.append("properties.currency: '\(String(currency.prefix(16)))' is not on TikTok's currency list; dropped")
            }
        }
        if let found = resolveNumber(.value, in: source, plan) {
            if let value = found {
                event.properties.value = value
            } else {
                warnings.append("properties.value: not a number; dropped")
            }
        }
        event.properties.orderID = resolveText(.orderID, in: source, plan)
        event.properties.searchString = resolveText(.searchString, in: source, plan)
        event.properties.description = resolveText(.description, in: source, plan)
        event.properties.status = resolveText(.status, in: source, plan)
        event.properties.shopID = resolveText(.shopID, in: source, plan)
        if let raw = resolve(.limitedDataUse, in: source, plan) {
            if let ldu = Normalise.bool(raw) {
                event.limitedDataUse = ldu
            } else {
                warnings.append("limited_data_use: not a boolean; dropped")
            }
        }
        for (k, custom) in plan.customFields.enumerated() {
            guard let value = customValue(custom, in: source, slots: plan.customSlots[k]) else { continue }
            let entry = TikTokEvent.Custom(key: custom.key, value: value)
            if custom.object == .user { event.customUser.append(entry) } else { event.customProperties.append(entry) }
        }
        return nil
    }

    /// App events: the `app` and `ad` objects and the device ids.
    private func fillApp<S: PathReadable>(_ event: inout TikTokEvent, from source: S, _ plan: Plan, warnings: inout [String]) {
        event.app.appID = resolveText(.appID, in: source, plan)
        event.app.appName = resolveText(.appName, in: source, plan)
        event.app.appVersion = resolveText(.appVersion, in: source, plan)
        event.ad.callback = resolveText(.adCallback, in: source, plan)
        event.ad.campaignID = resolveText(.adCampaignID, in: source, plan)
        event.ad.adID = resolveText(.adID, in: source, plan)
        event.ad.creativeID = resolveText(.adCreativeID, in: source, plan)
        for (field, keyPath) in [(TargetField.adIsRetargeting, \TikTokEvent.Ad.isRetargeting), (.adAttributed, \.attributed)] {
            guard let raw = resolve(field, in: source, plan) else { continue }
            if let flag = Normalise.bool(raw) { event.ad[keyPath: keyPath] = flag } else { warnings.append("\(field.rawValue): not a boolean; dropped") }
        }
        event.ad.attributionType = resolveText(.adAttributionType, in: source, plan)
        event.ad.attributionProvider = resolveText(.adAttributionProvider, in: source, plan)

        var idfa = resolveText(.userIDFA, in: source, plan)
        var gaid = resolveText(.userGAID, in: source, plan)
        if plan.advertisingIDFallback, idfa == nil, gaid == nil,
           let advertisingID = (source.value(at: ["context", "device", "advertising_id"]) ?? source.value(at: ["device", "advertising_id"])).flatMap(Normalise.text) {
            switch Self.platform(of: source) {
            case "ios": idfa = advertisingID
            case "android": gaid = advertisingID
            default: warnings.append("user.idfa/user.gaid: context.device.advertising_id given without a platform (context.device.os: iOS or Android); dropped")
            }
        }
        if let idfa {
            if let id = Normalise.advertisingID(idfa, uppercase: true) { event.user.idfa = id } else { warnings.append("user.idfa: not a device id (a UUID, not all zeros); dropped") }
        }
        if let gaid {
            if let id = Normalise.advertisingID(gaid, uppercase: false) { event.user.gaid = id } else { warnings.append("user.gaid: not a device id (a UUID, not all zeros); dropped") }
        }
        event.user.idfv = resolveText(.userIDFV, in: source, plan)
        if let raw = resolve(.userATTStatus, in: source, plan) {
            if let status = Normalise.attStatus(raw) { event.user.attStatus = status } else {
                warnings.append("user.att_status: not AUTHORIZED, DENIED, NOT_DETERMINED, RESTRICTED or NOT_APPLICABLE; dropped")
            }
        }
    }

    /// `ios`, `android` or `nil`, from `context.device.os` (a name, or an object with one) or
    /// `context.app.platform`.
    static func platform<S: PathReadable>(of source: S) -> String? {
        let candidates = [["context", "device", "os", "name"], ["context", "device", "os"], ["device", "os", "name"], ["device", "os"],
                          ["context", "app", "platform"]]
        for path in candidates {
            guard let text = source.value(at: path).flatMap(Normalise.text)?.lowercased() else { continue }
            if text.contains("android") { return "android" }
            if ["ios", "ipados", "iphone", "ipad", "tvos", "watchos"].contains(where: { text.contains($0) }) { return "ios" }
        }
        return nil
    }

    // MARK: - Resolution

    /// The first present value for `field`: along its paths, else its constant.
    private func resolve<S: PathReadable>(_ field: TargetField, in source: S, _ plan: Plan) -> JSON? {
        if let found = firstAlongPaths(field, in: source, plan, { $0.isPresent ? $0.json : nil }) { return found }
        if let constant = plan[field].constant, Normalise.isPresent(constant) { return constant }
        return nil
    }

    /// ``resolve(_:in:_:)`` as a number (``Normalise/number(_:)``), read in place: nil when no
    /// value is present, `.some(nil)` when the one present is not a number.
    private func resolveNumber<S: PathReadable>(_ field: TargetField, in source: S, _ plan: Plan) -> Double?? {
        if let found = firstAlongPaths(field, in: source, plan, { $0.presentValue }) { return .some(found.numericValue) }
        if let constant = plan[field].constant, Normalise.isPresent(constant) { return .some(Normalise.number(constant)) }
        return nil
    }

    /// `read` of the value at each of `field`'s paths in turn, the first that is not nil: the
    /// located slots of a document's view, else the paths walked.
    @inline(__always)
    private func firstAlongPaths<S: PathReadable, T>(_ field: TargetField, in source: S, _ plan: Plan, _ read: (S) -> T?) -> T? {
        let ordinal = field.ordinal
        if source.isLocated {
            for k in Int(plan.slotStart[ordinal]) ..< Int(plan.slotStart[ordinal + 1]) {
                if let found = source.document(slot: plan.slotTable[k]), let value = read(found) { return value }
            }
        } else {
            for path in plan.ordered[ordinal].paths {
                if let found = source.document(at: path), let value = read(found) { return value }
            }
        }
        return nil
    }

    /// The first path whose value is usable text, else the constant: an object without a
    /// usable `href` at `page.location`, say, falls through to the next path instead of
    /// ending the search.
    private func resolveText<S: PathReadable>(_ field: TargetField, in source: S, _ plan: Plan) -> String? {
        firstAlongPaths(field, in: source, plan, \.text) ?? plan[field].constant.flatMap(Normalise.text)
    }

    /// Which source path (or configured constant) supplies each TikTok field for `source`,
    /// by the same first-present rule the transform uses: what `transform` shows a marketer
    /// checking an event against the pixel. Fields no path supplies are left out; item
    /// fields are shown for the first item.
    public func decisions(for source: JSON) -> [(field: String, source: String)] {
        var result: [(field: String, source: String)] = []
        let name = source["event_name"].flatMap(Normalise.text) ?? ""
        let plan = eventPlans[name] ?? basePlan
        let eventSource = eventSource(in: source)
        result.append(("event_source", settings.eventSource == .auto ? "\(eventSource.rawValue) (autodiscovered)" : eventSource.rawValue))
        func supplier(_ from: FieldSource, in json: JSON, text: Bool) -> String? {
            for path in from.paths {
                guard let value = json.value(at: path) else { continue }
                if text ? Normalise.text(value) != nil : Normalise.isPresent(value) { return path.joined(separator: ".") }
            }
            return from.constant.map { Normalise.isPresent($0) ? "constant (transform.set)" : nil } ?? nil
        }
        var firstItem: JSON?
        if let items = resolve(.contents, in: source, plan), case .array(let elements) = items { firstItem = elements.first { if case .object = $0 { return true } else { return false } } }
        for field in TargetField.allCases {
            if let only = field.onlyFor, !only.contains(eventSource) { continue }
            if field.isItemField {
                guard let firstItem, let found = supplier(plan.sources[field]!, in: firstItem, text: field.isText) else { continue }
                result.append(("properties.contents.0." + field.rawValue.dropFirst("properties.contents.".count), "items.0.\(found)"))
            } else if let found = supplier(plan.sources[field]!, in: source, text: field.isText) {
                result.append((field.rawValue, found))
            } else if field == .userIDFA || field == .userGAID, plan.advertisingIDFallback,
                      Self.platform(of: source) == (field == .userIDFA ? "ios" : "android"),
                      let path = [["context", "device", "advertising_id"], ["device", "advertising_id"]].first(where: { source.value(at: $0).flatMap(Normalise.text) != nil }) {
                result.append((field.rawValue, path.joined(separator: ".") + (field == .userIDFA ? " (iOS)" : " (Android)")))
            }
        }
        for custom in plan.customFields {
            if let found = supplier(custom.source, in: source, text: false) {
                result.append(("\(custom.object.rawValue).\(custom.key)", found + (custom.hashed ? " (hashed)" : "")))
            }
        }
        return result
    }

    /// A custom property's value: the first present value (along its paths, else its
    /// constant), strings trimmed; hashed like external_id when configured (a 64-hex value is kept).
    private func customValue<S: PathReadable>(_ custom: CustomField, in source: S, slots: [Int32]) -> JSON? {
        var found: JSON?
        for (k, path) in custom.source.paths.enumerated() {
            if let value = source.document(at: path, slot: slots[k]), value.isPresent { found = value.json; break }
        }
        if found == nil, let constant = custom.source.constant, Normalise.isPresent(constant) { found = constant }
        guard let found else { return nil }
        if custom.hashed {
            guard let text = Normalise.text(found) else { return nil }
            return .string(text.isSHA256Hex ? text.lowercased() : hasher.hexDigest(text.lowercased()))
        }
        if case .string = found { return Normalise.text(found).map(JSON.string) }
        return found
    }

    /// How a field's `normalise` treats ASCII text, so that ASCII values are trimmed,
    /// normalised and hashed on their bytes (no trimmed and lowercased copies).
    enum ASCIINormalisation { case email, lowercased, asIs }

    /// Normalises and hashes each value of a string-or-array field, dropping empties,
    /// invalid values (with one warning) and duplicates. `ascii`: the shortcut for ASCII
    /// values, nil for none (phones).
    private func hashedValues<S: PathReadable>(_ field: TargetField, in source: S, _ plan: Plan, warnings: inout [String],
                                               ascii: ASCIINormalisation? = nil, normalise: (String) -> String?) -> [String] {
        var result: [String] = []
        var dropped = 0
        // An array's elements, or the value itself: read in place, or a constant's JSON.
        func addAll<T: PathReadable>(_ value: T) {
            guard let elements = value.arrayElements else {
                addDigest(of: value, ascii: ascii, normalise: normalise, to: &result, dropped: &dropped)  // no one-element array
                return
            }
            for element in elements { addDigest(of: element, ascii: ascii, normalise: normalise, to: &result, dropped: &dropped) }
        }
        if let found = firstAlongPaths(field, in: source, plan, { $0.presentValue }) {
            addAll(found)
        } else if let constant = plan[field].constant, Normalise.isPresent(constant) {
            addAll(constant)
        }
        if dropped > 0 {
            warnings.append("\(field.rawValue): \(dropped) invalid value\(dropped == 1 ? "" : "s") dropped")
        }
        return result
    }

    /// One value of ``hashedValues``: its digest added unless already there, or counted as
    /// dropped when it is present but invalid.
    private func addDigest<T: PathReadable>(of element: T, ascii: ASCIINormalisation?, normalise: (String) -> String?,
                                            to result: inout [String], dropped: inout Int) {
        if let ascii, let outcome = element.withStringBytes({ Self.asciiDigest($0, ascii, hasher) }) {
            switch outcome {
            case .digest(let digest):
                if !result.contains(digest) { result.append(digest) }
                return
            case .invalid: dropped += 1; return
            case .absent: return
            case .notASCII: break
            }
        }
        guard let text = element.text else {
            if element.isPresent { dropped += 1 }
            return
        }
        let digest: String
        if text.isSHA256Hex {
            digest = text.lowercased()
        } else if let normalised = normalise(text) {
            digest = hasher.hexDigest(normalised)
        } else {
            dropped += 1
            return
        }
        if !result.contains(digest) { result.append(digest) }
    }

    private enum ASCIIDigest { case digest(String), invalid, absent, notASCII }

    /// What ``hashedValues`` makes of a string value, on its bytes: the same as
    /// `Normalise.text`, the SHA-256-hex check and `normalise` on a String, for ASCII text
    /// (trimming and lowercasing ASCII are the Unicode rules restricted to it).
    private static func asciiDigest(_ bytes: UnsafeBufferPointer<UInt8>, _ rule: ASCIINormalisation, _ hasher: SHA256Hasher) -> ASCIIDigest {
        for byte in bytes where byte >= 0x80 { return .notASCII }
        guard let range = Bytes.trimmingASCIIWhitespace(bytes, 0..<bytes.count), !range.isEmpty else { return .absent }
        let text = UnsafeBufferPointer(rebasing: bytes[range])
        let isHex = Bytes.isSHA256Hex(text)
        if rule == .email, !isHex, !text.contains(UInt8(ascii: "@")) { return .invalid }
        if rule == .asIs, !isHex { return .digest(hasher.hexDigest(bytes: text)) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: text.count) { lower in
            for (i, byte) in text.enumerated() { lower[i] = (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }
            let lowered = UnsafeBufferPointer(lower)
            return .digest(isHex ? String(decoding: lowered, as: UTF8.self) : hasher.hexDigest(bytes: lowered))
        }
    }

    /// Adds an item's content, and its id to the content ids, unless it has no field at all.
    private static func add(_ content: consuming TikTokEvent.Content, to properties: inout TikTokEvent.Properties) {
        guard !content.isEmpty else { return }
        if let id = content.contentID { properties.contentIDs.append(id) }
        properties.contents.append(consume content)
    }

    /// One content per source item, each field from the item's own paths.
    private func fillContents<S: PathReadable>(from items: [S], _ plan: Plan, into properties: inout TikTokEvent.Properties, warnings: inout [String]) {
        var badPrices = 0
        var badQuantities = 0
        var badTypes = 0
        var numItems: Int64 = 0
        properties.contents.reserveCapacity(items.count)  // one allocation each, not one per doubling
        properties.contentIDs.reserveCapacity(items.count)
        for item in items {
            guard item.isObject else { continue }
            numItems += 1
            var priceValue: Double?, quantityValue: Int64?, typeValue: String?
            if plan.defaultItemFields {
                // The spec's item paths: the item's members and its product's, each found in
                // one pass (the first member of a name, as a path lookup finds it).
                var id: S?, price: S?, quantity: S?, type: S?, product: S?
                item.forEachMember { name, value in
                    switch name.count {
                    case 2: if id == nil, Bytes.equal(name, "id") { id = value }
                    case 5: if price == nil, Bytes.equal(name, "price") { price = value }
                    case 7: if product == nil, Bytes.equal(name, "product") { product = value }
                    case 8: if quantity == nil, Bytes.equal(name, "quantity") { quantity = value }
                    case 12: if type == nil, Bytes.equal(name, "content_type") { type = value }
                    default: break
                    }
                }
                var productID: S?, name: S?, category: S?, brand: S?, productPrice: S?
                product?.forEachMember { key, value in
                    switch key.count {
                    case 2: if productID == nil, Bytes.equal(key, "id") { productID = value }
                    case 4: if name == nil, Bytes.equal(key, "name") { name = value }
                    case 5:
                        if brand == nil, Bytes.equal(key, "brand") { brand = value }
                        else if productPrice == nil, Bytes.equal(key, "price") { productPrice = value }
                    case 10: if category == nil, Bytes.equal(key, "category_1") { category = value }
                    default: break
                    }
                }
                if let raw = price?.presentValue ?? productPrice?.presentValue {
                    if let price = raw.numericValue { priceValue = price } else { badPrices += 1 }
                }
                if let raw = quantity?.presentValue {
                    if let quantity = raw.integerValue { quantityValue = quantity } else { badQuantities += 1 }
                }
                if let type = type?.text {
                    if let known = ContentType(rawValue: type) { typeValue = known.rawValue } else { badTypes += 1 }
                }
                Self.add(TikTokEvent.Content(contentID: id?.text ?? productID?.text, contentName: name?.text, contentCategory: category?.text,
                                             brand: brand?.text, price: priceValue, quantity: quantityValue, contentType: typeValue),
                         to: &properties)
                continue
            }
            if let found = resolveNumber(.itemPrice, in: item, plan) {
                if let price = found { priceValue = price } else { badPrices += 1 }
            }
            if let found = resolveNumber(.itemQuantity, in: item, plan) {
                if let quantity = Normalise.integer(number: found) { quantityValue = quantity } else { badQuantities += 1 }
            }
            if let type = resolveText(.itemContentType, in: item, plan) {
                if let known = ContentType(rawValue: type) { typeValue = known.rawValue } else { badTypes += 1 }
            }
            Self.add(TikTokEvent.Content(contentID: resolveText(.itemID, in: item, plan), contentName: resolveText(.itemName, in: item, plan),
                                         contentCategory: resolveText(.itemCategory, in: item, plan), brand: resolveText(.itemBrand, in: item, plan),
                                         price: priceValue, quantity: quantityValue, contentType: typeValue),
                     to: &properties)
        }
        if numItems > 0 { properties.numItems = numItems }
        if badPrices > 0 { warnings.append("properties.contents.price: \(badPrices) not a number; dropped") }
        if badQuantities > 0 { warnings.append("properties.contents.quantity: \(badQuantities) not an integer; dropped") }
        if badTypes > 0 { warnings.append("properties.contents.content_type: \(badTypes) neither product nor product_group; dropped") }
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        utf8.contains(UInt8(ascii: "_")) ? String(map { $0 == "_" ? "-" : $0 }) : self
    }
}
