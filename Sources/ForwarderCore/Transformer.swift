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
    private let sources: [TargetField: FieldSource]

    public init(settings: TransformSettings = TransformSettings()) {
        self.settings = settings
        sources = Dictionary(uniqueKeysWithValues: TargetField.allCases.map { ($0, settings.source(for: $0)) })
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
        let source: JSON
        do {
            source = try JSONParser.parse(payload)
        } catch {
            return .rejected(reason: "payload is not JSON (\(error.description))")
        }
        return transform(source: source, eventID: eventID, insertedAtMillis: insertedAtMillis, nowMillis: nowMillis)
    }

    public func transform(payload: String, eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        transform(payload: Array(payload.utf8), eventID: eventID, insertedAtMillis: insertedAtMillis, nowMillis: nowMillis)
    }

    public func transform(source: JSON, eventID: String, insertedAtMillis: Int64?, nowMillis: Int64) -> TransformOutcome {
        guard case .object = source else { return .rejected(reason: "payload is not a JSON object") }
        guard let rawName = source["event_name"] else { return .rejected(reason: "payload has no event_name") }
        guard case .string(let nameText) = rawName else { return .rejected(reason: "event_name is not a string") }
        let sourceName = nameText.trimmingWhitespace()
        guard !sourceName.isEmpty else { return .rejected(reason: "event_name is empty") }
        let trimmedID = eventID.trimmingWhitespace()
        guard !trimmedID.isEmpty else { return .rejected(reason: "event_id is empty") }
        if settings.eventNames[sourceName] == TransformSettings.doNotSend {
            return .skipped(reason: "event name '\(String(sourceName.prefix(64)))' is mapped to nothing (transform.events: false)")
        }
        guard let eventName = settings.tiktokName(for: sourceName) else {
            return .skipped(reason: "event name '\(String(sourceName.prefix(64)))' has no TikTok mapping")
        }

        var warnings: [String] = []

        // event_time: the time the event happened, never the time it is sent.
        var eventTime: Int64?
        if let raw = resolve(.eventTime, in: source) {
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

        // page.url is required for web events.
        if let url = resolveText(.pageURL, in: source) ?? settings.defaultPageURL {
            event.page.url = url
        } else {
            return .rejected(reason: "no page URL (TikTok requires page.url for web events; set default_page_url)")
        }
        event.page.referrer = resolveText(.pageReferrer, in: source)

        // user: hashed matching keys.
        event.user.emails = hashedValues(.userEmail, in: source, warnings: &warnings, normalise: Normalise.email)
        event.user.phones = hashedValues(.userPhone, in: source, warnings: &warnings) { [settings] in
            Normalise.phone($0, defaultCountryCode: settings.defaultPhoneCountryCode)
        }
        let lowercaseID = settings.lowercaseExternalID
        event.user.externalIDs = hashedValues(.userExternalID, in: source, warnings: &warnings) {
            lowercaseID ? $0.lowercased() : $0
        }

        // user: keys sent as they are.
        event.user.ttp = resolveText(.userTTP, in: source) ?? Cookies.value(named: "_ttp", in: source)
        event.user.ttclid = resolveText(.userTTCLID, in: source)
            ?? Cookies.value(named: "ttclid", in: source)
            ?? URLQuery.value(named: "ttclid", in: event.page.url)
        if let ip = resolveText(.userIP, in: source) {
            if Normalise.isIPAddress(ip) { event.user.ip = ip } else { warnings.append("user.ip: not an IPv4 or IPv6 address; dropped") }
        }
        event.user.userAgent = resolveText(.userAgent, in: source)
        event.user.locale = resolveText(.userLocale, in: source).map { $0.replacingUnderscores() }

        // properties
        if let items = resolve(.contents, in: source) {
            if case .array(let elements) = items {
                fillContents(from: elements, into: &event.properties, warnings: &warnings)
            } else {
                warnings.append("properties.contents: items is not an array; dropped")
            }
        }
        if let type = resolveText(.contentType, in: source) {
            if let known = ContentType(rawValue: type) {
                event.properties.contentType = known.rawValue
            } else {
                warnings.append("properties.content_type: '\(String(type.prefix(32)))' is neither product nor product_group; used \(settings.contentType.rawValue)")
            }
        }
        if event.properties.contentType == nil, !event.properties.contents.isEmpty || !event.properties.contentIDs.isEmpty {
            event.properties.contentType = settings.contentType.rawValue
        }
        if let currency = resolveText(.currency, in: source) {
            let code = currency.uppercased()
            if Currency.isSupported(code) {
                event.properties.currency = code
            } else {
                warnings.append("properties.currency: '\(String(currency.prefix(16)))' is not on TikTok's currency list; dropped")
            }
        }
        if let raw = resolve(.value, in: source) {
            if let value = Normalise.number(raw) {
                event.properties.value = value
            } else {
                warnings.append("properties.value: not a number; dropped")
            }
        }
        event.properties.orderID = resolveText(.orderID, in: source)
        event.properties.searchString = resolveText(.searchString, in: source)
        event.properties.description = resolveText(.description, in: source)
        event.properties.status = resolveText(.status, in: source)
        event.properties.shopID = resolveText(.shopID, in: source)
        if let raw = resolve(.limitedDataUse, in: source) {
            if let ldu = Normalise.bool(raw) {
                event.limitedDataUse = ldu
            } else {
                warnings.append("limited_data_use: not a boolean; dropped")
            }
        }
        for custom in settings.customFields {
            guard let value = customValue(custom, in: source) else { continue }
            let entry = TikTokEvent.Custom(key: custom.key, value: value)
            if custom.object == .user { event.customUser.append(entry) } else { event.customProperties.append(entry) }
        }
        return .event(event, warnings: warnings)
    }

    // MARK: - Resolution

    /// The first non-empty value for `field`: the constant, or the first matching path.
    private func resolve(_ field: TargetField, in source: JSON) -> JSON? {
        switch sources[field]! {
        case .constant(let value):
            return Normalise.isPresent(value) ? value : nil
        case .paths(let paths):
            for path in paths {
                if let value = source.value(at: path), Normalise.isPresent(value) { return value }
            }
            return nil
        }
    }

    /// Which source path (or configured constant) supplies each TikTok field for `source`,
    /// by the same first-present rule the transform uses: what `transform` shows a marketer
    /// checking an event against the pixel. Fields no path supplies are left out.
    public func decisions(for source: JSON) -> [(field: String, source: String)] {
        var result: [(field: String, source: String)] = []
        for field in TargetField.allCases {
            switch sources[field]! {
            case .constant(let value):
                if Normalise.isPresent(value) { result.append((field.rawValue, "constant (transform.set)")) }
            case .paths(let paths):
                for path in paths {
                    guard let value = source.value(at: path) else { continue }
                    let usable = field.isText ? Normalise.text(value) != nil : Normalise.isPresent(value)
                    if usable {
                        result.append((field.rawValue, path.joined(separator: ".")))
                        break
                    }
                }
            }
        }
        for custom in settings.customFields {
            let target = "\(custom.object.rawValue).\(custom.key)"
            switch custom.source {
            case .constant(let value):
                if Normalise.isPresent(value) { result.append((target, "constant (transform.set)")) }
            case .paths(let paths):
                if let path = paths.first(where: { source.value(at: $0).map(Normalise.isPresent) ?? false }) {
                    result.append((target, path.joined(separator: ".") + (custom.hashed ? " (hashed)" : "")))
                }
            }
        }
        return result
    }

    /// A custom property's value: the first present value (a constant, or along its paths),
    /// strings trimmed; hashed like external_id when configured (a 64-hex value is kept).
    private func customValue(_ custom: CustomField, in source: JSON) -> JSON? {
        var found: JSON?
        switch custom.source {
        case .constant(let value): found = Normalise.isPresent(value) ? value : nil
        case .paths(let paths):
            for path in paths {
                if let value = source.value(at: path), Normalise.isPresent(value) { found = value; break }
            }
        }
        guard let found else { return nil }
        if custom.hashed {
            guard let text = Normalise.text(found) else { return nil }
            return .string(text.isSHA256Hex ? text.lowercased() : hasher.hexDigest(text.lowercased()))
        }
        if case .string = found { return Normalise.text(found).map(JSON.string) }
        return found
    }

    /// The first path whose value is usable text: an object without a usable `href` at
    /// `page.location`, say, falls through to the next path instead of ending the search.
    private func resolveText(_ field: TargetField, in source: JSON) -> String? {
        switch sources[field]! {
        case .constant(let value):
            return Normalise.text(value)
        case .paths(let paths):
            for path in paths {
                if let value = source.value(at: path), let text = Normalise.text(value) { return text }
            }
            return nil
        }
    }

    /// Normalises and hashes each value of a string-or-array field, dropping empties,
    /// invalid values (with one warning) and duplicates.
    private func hashedValues(_ field: TargetField, in source: JSON, warnings: inout [String],
                              normalise: (String) -> String?) -> [String] {
        guard let raw = resolve(field, in: source) else { return [] }
        let elements: [JSON]
        if case .array(let array) = raw { elements = array } else { elements = [raw] }
        var result: [String] = []
        var dropped = 0
        for element in elements {
            guard let text = Normalise.text(element) else {
                if Normalise.isPresent(element) { dropped += 1 }
                continue
            }
            let digest: String
            if text.isSHA256Hex {
                digest = text.lowercased()
            } else if let normalised = normalise(text) {
                digest = hasher.hexDigest(normalised)
            } else {
                dropped += 1
                continue
            }
            if !result.contains(digest) { result.append(digest) }
        }
        if dropped > 0 {
            warnings.append("\(field.rawValue): \(dropped) invalid value\(dropped == 1 ? "" : "s") dropped")
        }
        return result
    }

    private func fillContents(from items: [JSON], into properties: inout TikTokEvent.Properties, warnings: inout [String]) {
        var badPrices = 0
        var badQuantities = 0
        var numItems: Int64 = 0
        for item in items {
            guard case .object = item else { continue }
            numItems += 1
            let product = item["product"]
            var content = TikTokEvent.Content()
            content.contentID = item["id"].flatMap(Normalise.text) ?? product?["id"].flatMap(Normalise.text)
            content.contentName = product?["name"].flatMap(Normalise.text)
            content.contentCategory = product?["category_1"].flatMap(Normalise.text)
            content.brand = product?["brand"].flatMap(Normalise.text)
            if let raw = item["price"].flatMap(Normalise.presentValue) ?? product?["price"].flatMap(Normalise.presentValue) {
                if let price = Normalise.number(raw) { content.price = price } else { badPrices += 1 }
            }
            if let raw = item["quantity"].flatMap(Normalise.presentValue) {
                if let quantity = Normalise.integer(raw) { content.quantity = quantity } else { badQuantities += 1 }
            }
            guard content != TikTokEvent.Content() else { continue }
            properties.contents.append(content)
            if let id = content.contentID { properties.contentIDs.append(id) }
        }
        if numItems > 0 { properties.numItems = numItems }
        if badPrices > 0 { warnings.append("properties.contents.price: \(badPrices) not a number; dropped") }
        if badQuantities > 0 { warnings.append("properties.contents.quantity: \(badQuantities) not an integer; dropped") }
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        contains("_") ? String(map { $0 == "_" ? "-" : $0 }) : self
    }
}
