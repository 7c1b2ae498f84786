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
    /// Which TikTok event source the events are sent as (web unless configured).
    public var eventSource: EventSourceSetting = .web
    /// Which source events become `ViewContent` (`page_view`, `view_item` or both); `nil`
    /// keeps the preset's table.
    public var viewContent: ViewContentChoice?
    /// Per source event name: fields mapped differently for that event only
    /// (`transform.events.purchase.map: {properties.value: revenue}`).
    public var eventOverrides: [String: EventOverride] = [:]

    public init() {}

    /// The source of a target field: the configured override, else the default paths.
    public func source(for field: TargetField) -> FieldSource {
        mapping[field] ?? .paths(field.defaultPaths)
    }

    /// The value of ``eventNames`` for a source name mapped to nothing (`false` or `null` in
    /// the configuration): such events are skipped, never sent with a blank name.
    public static let doNotSend = ""

    /// The TikTok name for a source `event_name` sent as `source`, or `nil` when it has none.
    ///
    /// Configured names win; then, for app events, the app names (`sign_up` → `Registration`);
    /// then the preset (with the ViewContent choice). CRM events carry the producer's own
    /// (custom) names unless configured.
    public func tiktokName(for sourceName: String, source: EventSource = .web) -> String? {
        if let name = eventNames[sourceName] { return name == Self.doNotSend ? nil : name }
        if source == .crm { return sourceName }
        if let choice = viewContent, ViewContentChoice.sourceNames.contains(sourceName) {
            return choice.includes(sourceName) ? "ViewContent" : nil
        }
        if source == .app, let name = EventNamePreset.appNames[sourceName] { return name }
        if let name = preset.table[sourceName] { return name }
        return forwardUnmapped ? sourceName : nil
    }
}

/// What sends `page_view` and `view_item` to TikTok as `ViewContent`.
public enum ViewContentChoice: String, Sendable, CaseIterable {
    case pageView = "page_view"
    case viewItem = "view_item"
    case both

    static let sourceNames: Set<String> = ["page_view", "view_item", "view_content"]

    func includes(_ sourceName: String) -> Bool {
        switch self {
        case .both: return true
        case .pageView: return sourceName == "page_view"
        case .viewItem: return sourceName != "page_view"
        }
    }
}

/// The event source of a TikTok request (`event_source`), each with its own kind of id.
public enum EventSource: String, Sendable, CaseIterable, Hashable {
    case web, app, offline, crm

    /// What the `event_source_id` is for this source.
    public var idName: String {
        switch self {
        case .web: return "pixel code"
        case .app: return "TikTok App ID"
        case .offline: return "offline event set ID"
        case .crm: return "CRM event set ID"
        }
    }

    /// Whether `id` has the form of this source's ids: app and event set ids are numbers,
    /// pixel codes are not (a swapped id fails at TikTok with "Invalid value for event_source_id").
    public func accepts(id: String) -> Bool {
        let numeric = !id.isEmpty && id.utf8.allSatisfy(Normalise.isDigit)
        return self == .web ? !id.isEmpty && !numeric : numeric
    }
}

/// A destination's event source: one fixed source, or `auto` (per event: the event's
/// `partners.tiktok.event_source`, else `app` when it carries a non-empty `context.app`,
/// else `web`).
public enum EventSourceSetting: String, Sendable, CaseIterable, Equatable {
    case web, app, offline, crm, auto

    public var fixed: EventSource? { EventSource(rawValue: rawValue) }
}

/// Fields mapped differently for one source event name.
public struct EventOverride: Sendable, Equatable {
    public var mapping: [TargetField: FieldSource] = [:]
    /// Custom properties of this event only; one of the same key replaces the general one.
    public var customFields: [CustomField] = []
    public init() {}
}

public enum ContentType: String, Sendable, CaseIterable {
    case product
    case productGroup = "product_group"
}

/// Where a target field's value comes from: the first of `paths` (dot-separated keys; digits
/// index arrays) that holds a usable value, else `constant` (a fallback, or the value itself
/// when there are no paths).
public struct FieldSource: Sendable, Equatable {
    public var paths: [[String]]
    public var constant: JSON?

    public init(paths: [[String]], constant: JSON? = nil) {
        self.paths = paths
        self.constant = constant
    }

    public static func paths(_ paths: [[String]]) -> FieldSource { FieldSource(paths: paths) }
    /// Always this value.
    public static func constant(_ value: JSON) -> FieldSource { FieldSource(paths: [], constant: value) }

    /// Parses `a.b,c.d` into two paths.
    public static func parsePaths(_ text: String) -> FieldSource? {
        let paths = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingWhitespace().split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        }
        guard !paths.isEmpty, paths.allSatisfy({ !$0.isEmpty && $0.allSatisfy { !$0.isEmpty } }) else { return nil }
        return .paths(paths)
    }

    /// How `transform` names this source for a marketer: the path, or the constant.
    static func describe(_ path: [String]?) -> String {
        path.map { $0.joined(separator: ".") } ?? "constant (transform.set)"
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

    /// App event names (the current Commanders Act destination), for app events only.
    public static let appNames: [String: String] = [
        "sign_up": "Registration",
        "generate_lead": "GenerateLead",
        "login": "Login",
        "rate": "Rate",
        "install_app": "InstallApp",
        "launch_app": "LaunchAPP",
        "achieve_level": "AchieveLevel",
    ]

    /// TikTok's standard event names (current and the legacy ones it still accepts): the only
    /// names offline events may carry, and names CRM events may not.
    public static let standardNames: Set<String> = [
        "AddPaymentInfo", "AddToCart", "AddToWishlist", "ApplicationApproval", "CompleteRegistration", "Contact",
        "CustomizeProduct", "Download", "FindLocation", "InitiateCheckout", "Lead", "Purchase", "Schedule", "Search",
        "StartTrial", "SubmitApplication", "Subscribe", "ViewContent",
        "CompletePayment", "SubmitForm", "ClickButton", "PlaceAnOrder",
    ]

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
        case .eventTime, .userEmail, .userPhone, .userExternalID, .contents, .value, .limitedDataUse,
             .adIsRetargeting, .adAttributed, .itemPrice, .itemQuantity: return false
        default: return true
        }
    }

    /// The case's position in ``allCases`` (its tag: an enum without payloads is stored as its
    /// declaration index; a test holds this to `allCases`' order).
    @inline(__always)
    public var ordinal: Int { Int(unsafeBitCast(self, to: UInt8.self)) }

    /// Fields of each element of `properties.contents`, whose paths are read in each source
    /// item (`price`, `product.price`), not in the whole event.
    public var isItemField: Bool { rawValue.hasPrefix("properties.contents.") }

    /// The event sources a field is sent for (`nil`: all of them).
    public var onlyFor: Set<EventSource>? {
        switch self {
        case .pageURL, .pageReferrer, .userTTP, .userTTCLID: return [.web]
        case .appID, .appName, .appVersion, .adCallback, .adCampaignID, .adID, .adCreativeID, .adIsRetargeting, .adAttributed,
             .adAttributionType, .adAttributionProvider, .userIDFA, .userIDFV, .userGAID, .userATTStatus: return [.app]
        case .leadID, .leadEventSource: return [.crm]
        default: return nil
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
    // App events: the app, the ad that brought the install, device ids.
    case appID = "app.app_id"
    case appName = "app.app_name"
    case appVersion = "app.app_version"
    case adCallback = "ad.callback"
    case adCampaignID = "ad.campaign_id"
    case adID = "ad.ad_id"
    case adCreativeID = "ad.creative_id"
    case adIsRetargeting = "ad.is_retargeting"
    case adAttributed = "ad.attributed"
    case adAttributionType = "ad.attribution_type"
    case adAttributionProvider = "ad.attribution_provider"
    case userIDFA = "user.idfa"
    case userIDFV = "user.idfv"
    case userGAID = "user.gaid"
    case userATTStatus = "user.att_status"
    // CRM events.
    case leadID = "lead.lead_id"
    case leadEventSource = "lead.lead_event_source"
    // Each element of properties.contents, from each source item.
    case itemID = "properties.contents.content_id"
    case itemName = "properties.contents.content_name"
    case itemCategory = "properties.contents.content_category"
    case itemBrand = "properties.contents.brand"
    case itemPrice = "properties.contents.price"
    case itemQuantity = "properties.contents.quantity"
    case itemContentType = "properties.contents.content_type"

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
        case .appID: paths = ["context.app.namespace", "app.namespace"]
        case .appName: paths = ["context.app.name", "app.name"]
        case .appVersion: paths = ["context.app.version", "app.version"]
        case .adCallback, .adCampaignID, .adID, .adCreativeID, .adIsRetargeting, .adAttributed, .adAttributionType, .adAttributionProvider:
            let key = rawValue.dropFirst(3)
            paths = ["partners.tiktok.ad.\(key)", "context.ad.\(key)"]
        // IDFA / GAID also come from context.device.advertising_id, by platform (Transformer).
        case .userIDFA: paths = ["context.device.idfa", "device.idfa"]
        case .userGAID: paths = ["context.device.gaid", "device.gaid"]
        case .userIDFV: paths = ["context.device.idfv", "device.idfv"]
        case .userATTStatus: paths = ["context.device.att_status", "device.att_status"]
        case .leadID: paths = ["lead_id", "properties.lead_id", "partners.tiktok.lead_id"]
        case .leadEventSource: paths = ["lead_event_source", "properties.lead_event_source", "partners.tiktok.lead_event_source"]
        case .itemID: paths = ["id", "product.id"]
        case .itemName: paths = ["product.name"]
        case .itemCategory: paths = ["product.category_1"]
        case .itemBrand: paths = ["product.brand"]
        case .itemPrice: paths = ["price", "product.price"]
        case .itemQuantity: paths = ["quantity"]
        case .itemContentType: paths = ["content_type"]
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
            guard let range = Bytes.trimmingASCIIWhitespace(b, 0..<b.count) else { return .none }  // maybe Unicode white space
            if range.isEmpty { return .some("") }
            if range == 0..<b.count { return .some(nil) }  // unchanged
            return .some(String(decoding: UnsafeBufferPointer(rebasing: b[range]), as: UTF8.self))
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
