/// Everything that shapes how a source event becomes a TikTok event. The defaults are what a
/// site gets with no configuration (docs/events.md).
public struct TransformSettings: Sendable, Equatable {
    /// Which event-name table applies before ``eventNames`` overrides.
    public var preset: EventNamePreset = .classic
    /// Per-name overrides, source `event_name` → TikTok event name. They win over the preset.
    public var eventNames: [String: String] = [:]
    /// Send names with no mapping verbatim as custom events instead of skipping them.
    public var forwardUnmapped = false
    /// Smart mapping: replaces the source paths of a target field, or sets a constant.
    public var mapping: [TargetField: FieldSource] = [:]
    /// `properties.content_type` when the event carries none.
    public var contentType: ContentType = .product
    /// Calling code (digits, e.g. `33`) given to phone numbers written without one.
    public var defaultPhoneCountryCode: String?
    /// Lowercase `external_id` before hashing (TikTok's recommendation).
    public var lowercaseExternalID = true
    /// Events whose `event_time` is older than this are rejected as expired. 7 days.
    public var maxEventAgeSeconds: Int64 = 7 * 86_400
    /// `page.url` for events that carry none; TikTok requires one for web events.
    public var defaultPageURL: String?
    /// Custom user and event properties (`transform.map` / `transform.set` keys under `user.`
    /// or `properties.` that are not TikTok's standard ones), in configuration order.
    public var customFields: [CustomField] = []

    public init() {}

    /// The source of a target field: the configured override, else the default paths.
    public func source(for field: TargetField) -> FieldSource {
        mapping[field] ?? .paths(field.defaultPaths)
    }

    /// The value of ``eventNames`` for a source name mapped to nothing (`false` or `null` in
    /// the configuration): such events are skipped, never sent with a blank name.
    public static let doNotSend = ""

    /// The TikTok name for a source `event_name`, or `nil` when it has none.
    public func tiktokName(for sourceName: String) -> String? {
        if let name = eventNames[sourceName] { return name == Self.doNotSend ? nil : name }
        if let name = preset.table[sourceName] { return name }
        return forwardUnmapped ? sourceName : nil
    }
}

public enum ContentType: String, Sendable, CaseIterable {
    case product
    case productGroup = "product_group"
}

/// Where a target field's value comes from.
public enum FieldSource: Sendable, Equatable {
    /// The first of these paths (dot-separated keys; digits index arrays) that holds a
    /// non-empty value.
    case paths([[String]])
    /// Always this value.
    case constant(JSON)

    /// Parses `a.b,c.d` into two paths.
    public static func parsePaths(_ text: String) -> FieldSource? {
        let paths = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingWhitespace().split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        }
        guard !paths.isEmpty, paths.allSatisfy({ !$0.isEmpty && $0.allSatisfy { !$0.isEmpty } }) else { return nil }
        return .paths(paths)
    }
}

/// The two event-name tables of the spec (§2).
public enum EventNamePreset: String, Sendable, CaseIterable {
    /// The names the original destination documented (the default).
    case classic
    /// TikTok's current standard names (since May 2025).
    case current

    public var table: [String: String] {
        switch self {
        case .classic: return Self.classicTable
        case .current: return Self.currentTable
        }
    }

    private static let classicTable: [String: String] = [
        "add_payment_info": "AddPaymentInfo",
        "add_to_cart": "AddToCart",
        "add_to_wishlist": "AddToWishlist",
        "begin_checkout": "InitiateCheckout",
        "click_button": "ClickButton",
        "purchase": "CompletePayment",
        "complete_payment": "CompletePayment",
        "contact": "Contact",
        "download": "Download",
        "page_view": "ViewContent",
        "search": "Search",
        "sign_up": "CompleteRegistration",
        "submit_form": "SubmitForm",
        "subscribe": "Subscribe",
    ]

    private static let currentTable: [String: String] = [
        "add_payment_info": "AddPaymentInfo",
        "add_to_cart": "AddToCart",
        "add_to_wishlist": "AddToWishlist",
        "begin_checkout": "InitiateCheckout",
        "click_button": "ViewContent",
        "purchase": "Purchase",
        "complete_payment": "Purchase",
        "contact": "Contact",
        "download": "Download",
        "page_view": "ViewContent",
        "view_item": "ViewContent",
        "view_content": "ViewContent",
        "search": "Search",
        "sign_up": "CompleteRegistration",
        "submit_form": "Lead",
        "generate_lead": "Lead",
        "subscribe": "Subscribe",
        "start_trial": "StartTrial",
        "application_approval": "ApplicationApproval",
        "customize_product": "CustomizeProduct",
        "find_location": "FindLocation",
        "schedule": "Schedule",
        "submit_application": "SubmitApplication",
    ]
}

/// A custom key of `user` or `properties`, from a source path list or a constant. Sent as
/// given (strings trimmed; absent values left out), or hashed like external_id (trim,
/// lowercase, SHA-256; already-hashed values kept) when `hashed`.
public struct CustomField: Sendable, Equatable {
    public enum Object: String, Sendable { case user, properties }
    public var object: Object
    public var key: String
    public var source: FieldSource
    public var hashed: Bool

    public init(object: Object, key: String, source: FieldSource, hashed: Bool = false) {
        self.object = object
        self.key = key
        self.source = source
        self.hashed = hashed
    }

    /// Keys TikTok defines in `user` and `properties`: mapped through ``TargetField``, never custom.
    public static let standardKeys: [Object: Set<String>] = [
        .user: ["email", "phone", "external_id", "ttp", "ttclid", "ip", "user_agent", "locale", "idfa", "idfv", "gaid", "att_status"],
        .properties: ["contents", "content_type", "content_ids", "currency", "value", "num_items", "order_id", "shop_id",
                      "description", "status", "search_string", "query"],
    ]

    /// `user.loyalty_tier` → (.user, "loyalty_tier") when it names a custom key (letters,
    /// digits and underscores, at most 64, not a standard key); `nil` otherwise.
    public static func parse(_ target: String) -> (Object, String)? {
        let parts = target.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, let object = Object(rawValue: parts[0]), (1...64).contains(parts[1].utf8.count),
              parts[1].utf8.allSatisfy({ Normalise.isDigit($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0 | 0x20) || $0 == UInt8(ascii: "_") }),
              !(standardKeys[object]?.contains(parts[1]) ?? false) else { return nil }
        return (object, parts[1])
    }
}

/// The TikTok fields a source value can be mapped to, named by their path in the TikTok event.
public enum TargetField: String, Sendable, CaseIterable {
    /// Fields filled from the first path holding usable text (the others take any value).
    public var isText: Bool {
        switch self {
        case .eventTime, .userEmail, .userPhone, .userExternalID, .contents, .value, .limitedDataUse: return false
        default: return true
        }
    }

    case eventTime = "event_time"
    case userEmail = "user.email"
    case userPhone = "user.phone"
    case userExternalID = "user.external_id"
    case userTTP = "user.ttp"
    case userTTCLID = "user.ttclid"
    case userIP = "user.ip"
    case userAgent = "user.user_agent"
    case userLocale = "user.locale"
    case pageURL = "page.url"
    case pageReferrer = "page.referrer"
    /// The source items array that becomes `properties.contents`.
    case contents = "properties.contents"
    case contentType = "properties.content_type"
    case currency = "properties.currency"
    case value = "properties.value"
    case orderID = "properties.order_id"
    case searchString = "properties.search_string"
    case description = "properties.description"
    case status = "properties.status"
    case shopID = "properties.shop_id"
    case limitedDataUse = "limited_data_use"

    /// The spec's default source paths (§3), in order.
    public var defaultPaths: [[String]] {
        let paths: [String]
        switch self {
        case .eventTime: paths = ["context.event_timestamp", "event_timestamp", "timestamp"]
        case .userEmail: paths = ["user.email", "properties.user.email", "user.email_sha256", "properties.user.email_sha256"]
        case .userPhone: paths = ["user.phone", "properties.user.phone", "user.phone_sha256", "properties.user.phone_sha256"]
        case .userExternalID: paths = ["user.id", "properties.user.id"]
        case .userTTP: paths = ["partners.tiktok.ttp"]
        case .userTTCLID: paths = ["partners.tiktok.ttclid"]
        case .userIP: paths = ["context.device.ip", "device.ip"]
        case .userAgent: paths = ["context.device.user_agent", "device.user_agent"]
        case .userLocale: paths = ["context.device.language", "context.device.lang", "device.lang", "context.page.lang"]
        case .pageURL: paths = ["page.location.href", "page.location", "context.page.url", "url"]
        case .pageReferrer: paths = ["page.referrer", "context.page.referrer", "referrer"]
        case .contents: paths = ["items", "properties.items"]
        case .contentType: paths = ["content_type", "properties.content_type"]
        case .currency: paths = ["currency", "properties.currency"]
        case .value: paths = ["value", "properties.value"]
        case .orderID: paths = ["id", "properties.id"]
        case .searchString: paths = ["search_term", "properties.search_term"]
        case .description: paths = ["event_name"]
        case .status: paths = ["status", "properties.status"]
        case .shopID: paths = ["partners.tiktok.shop_id"]
        case .limitedDataUse: paths = ["partners.tiktok.ldu"]
        }
        return paths.map { $0.split(separator: ".").map(String.init) }
    }
}

extension StringProtocol {
    /// The string without leading and trailing white space (spaces, tabs, newlines, NBSP).
    public func trimmingWhitespace() -> String {
        String(self).trimmingWhitespace()
    }
}

extension String {
    /// The string without leading and trailing white space (spaces, tabs, newlines, NBSP).
    public func trimmingWhitespace() -> String {
        var copy = self
        let trimmed: String?? = copy.withUTF8 { b in
            var start = 0
            var end = b.count
            while start < end, b[start] == 0x20 || (0x09...0x0D).contains(b[start]) { start += 1 }
            while end > start, b[end - 1] == 0x20 || (0x09...0x0D).contains(b[end - 1]) { end -= 1 }
            if start == end { return .some("") }
            guard b[start] < 0x80, b[end - 1] < 0x80 else { return .none }  // maybe Unicode white space
            if start == 0, end == b.count { return .some(nil) }            // unchanged
            return .some(String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self))
        }
        switch trimmed {
        case .some(.some(let result)): return result
        case .some(.none): return self
        case .none:
            let scalars = unicodeScalars
            guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
            return String(String.UnicodeScalarView(scalars[first...last]))
        }
    }
}
