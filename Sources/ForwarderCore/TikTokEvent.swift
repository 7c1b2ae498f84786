/// One event of a TikTok Events API 2.0 request (`data[]`), already normalised and hashed.
///
/// Every field that is present is valid by construction: ids are strings, `eventTime` is
/// integer seconds, hashed fields are 64 lowercase hex characters, and absent values are
/// `nil` or empty — the encoder never writes `""` or `null`.
public struct TikTokEvent: Sendable, Equatable {
    public var event: String
    public var eventTime: Int64
    public var eventID: String
    /// The request's `event_source` this event goes out with (not written in the event).
    public var source: EventSource = .web
    public var user = User()
    public var page = Page(url: "")
    public var properties = Properties()
    public var limitedDataUse: Bool?
    /// App events: `app`, `ad`. CRM events: `lead`.
    public var app = App()
    public var ad = Ad()
    public var lead = Lead()

    public struct App: Sendable, Equatable {
        public var appID: String?
        public var appName: String?
        public var appVersion: String?
        public init(appID: String? = nil, appName: String? = nil, appVersion: String? = nil) {
            self.appID = appID
            self.appName = appName
            self.appVersion = appVersion
        }
    }

    public struct Ad: Sendable, Equatable {
        public var callback: String?
        public var campaignID: String?
        public var adID: String?
        public var creativeID: String?
        public var isRetargeting: Bool?
        public var attributed: Bool?
        public var attributionType: String?
        public var attributionProvider: String?
    }

    public struct Lead: Sendable, Equatable {
        public var leadID: String?
        public var leadEventSource: String?
        public init(leadID: String? = nil, leadEventSource: String? = nil) {
            self.leadID = leadID
            self.leadEventSource = leadEventSource
        }
    }

    public struct User: Sendable, Equatable {
        public var emails: [String] = []
        public var phones: [String] = []
        public var externalIDs: [String] = []
        public var ttp: String?
        public var ttclid: String?
        public var ip: String?
        public var userAgent: String?
        public var locale: String?
        /// App events: device advertising ids (raw, normalised; or SHA-256) and iOS tracking status.
        public var idfa: String?
        public var idfv: String?
        public var gaid: String?
        public var attStatus: String?
    }

    public struct Page: Sendable, Equatable {
        public var url: String
        public var referrer: String?
    }

    public struct Content: Sendable, Equatable {
        public var contentID: String?
        public var contentName: String?
        public var contentCategory: String?
        public var brand: String?
        public var price: Double?
        public var quantity: Int64?
        /// Per item `content_type` (product or product_group), when the item says.
        public var contentType: String?

        public init(contentID: String? = nil, contentName: String? = nil, contentCategory: String? = nil,
                    brand: String? = nil, price: Double? = nil, quantity: Int64? = nil, contentType: String? = nil) {
            self.contentType = contentType
            self.contentID = contentID
            self.contentName = contentName
            self.contentCategory = contentCategory
            self.brand = brand
            self.price = price
            self.quantity = quantity
        }

        /// No field set: nothing to send for this item.
        var isEmpty: Bool {
            contentID == nil && contentName == nil && contentCategory == nil && brand == nil && price == nil && quantity == nil && contentType == nil
        }
    }

    /// A configured extra key of `user` or `properties` (Commanders Act's Custom User / Event
    /// Properties) and its value as it is sent.
    public struct Custom: Sendable, Equatable {
        public var key: String
        public var value: JSON
        public init(key: String, value: JSON) {
            self.key = key
            self.value = value
        }
    }

    /// Custom user properties, after the standard keys of `user`.
    public var customUser: [Custom] = []
    /// Custom event properties, after the standard keys of `properties`.
    public var customProperties: [Custom] = []

    public struct Properties: Sendable, Equatable {
        public var contents: [Content] = []
        public var contentType: String?
        public var contentIDs: [String] = []
        public var currency: String?
        public var value: Double?
        public var numItems: Int64?
        public var orderID: String?
        public var shopID: String?
        public var description: String?
        public var status: String?
        public var searchString: String?
    }

    public init(event: String, eventTime: Int64, eventID: String) {
        self.event = event
        self.eventTime = eventTime
        self.eventID = eventID
    }

    /// Appends this event as one compact JSON object.
    public func encode(into w: inout JSONWriter) {
        w.raw("{\"event\":"); w.string(event)
        w.raw(",\"event_time\":"); w.integer(eventTime)
        w.raw(",\"event_id\":"); w.string(eventID)

        var fields = FieldList(",\"user\":{")
        fields.strings("email", user.emails, &w)
        fields.strings("phone", user.phones, &w)
        fields.strings("external_id", user.externalIDs, &w)
        fields.string("ttp", user.ttp, &w)
        fields.string("ttclid", user.ttclid, &w)
        fields.string("ip", user.ip, &w)
        fields.string("user_agent", user.userAgent, &w)
        fields.string("locale", user.locale, &w)
        fields.string("idfa", user.idfa, &w)
        fields.string("idfv", user.idfv, &w)
        fields.string("gaid", user.gaid, &w)
        fields.string("att_status", user.attStatus, &w)
        for custom in customUser { fields.key(custom.key, &w); w.value(custom.value) }
        fields.close(&w)

        fields = FieldList(",\"page\":{")
        fields.string("url", page.url, &w)
        fields.string("referrer", page.referrer, &w)
        fields.close(&w)

        fields = FieldList(",\"app\":{")
        fields.string("app_id", app.appID, &w)
        fields.string("app_name", app.appName, &w)
        fields.string("app_version", app.appVersion, &w)
        fields.close(&w)

        fields = FieldList(",\"ad\":{")
        fields.string("callback", ad.callback, &w)
        fields.string("campaign_id", ad.campaignID, &w)
        fields.string("ad_id", ad.adID, &w)
        fields.string("creative_id", ad.creativeID, &w)
        fields.bool("is_retargeting", ad.isRetargeting, &w)
        fields.bool("attributed", ad.attributed, &w)
        fields.string("attribution_type", ad.attributionType, &w)
        fields.string("attribution_provider", ad.attributionProvider, &w)
        fields.close(&w)

        fields = FieldList(",\"lead\":{")
        fields.string("lead_id", lead.leadID, &w)
        fields.string("lead_event_source", lead.leadEventSource, &w)
        fields.close(&w)

        fields = FieldList(",\"properties\":{")
        if !properties.contents.isEmpty {
            fields.key("contents", &w)
            w.raw(UInt8(ascii: "["))
            // Read in place: a copy of each content (and its release) cost more than writing it.
            properties.contents.withUnsafeBufferPointer { contents in
                for i in contents.indices {
                    if i > 0 { w.raw(UInt8(ascii: ",")) }
                    var inner = FieldList("{")
                    inner.string("content_id", contents[i].contentID, &w)
                    inner.string("content_name", contents[i].contentName, &w)
                    inner.string("content_category", contents[i].contentCategory, &w)
                    inner.string("brand", contents[i].brand, &w)
                    inner.number("price", contents[i].price, &w)
                    inner.integer("quantity", contents[i].quantity, &w)
                    inner.string("content_type", contents[i].contentType, &w)
                    inner.close(&w, always: true)
                }
            }
            w.raw(UInt8(ascii: "]"))
        }
        fields.string("content_type", properties.contentType, &w)
        fields.stringArray("content_ids", properties.contentIDs, &w)
        fields.string("currency", properties.currency, &w)
        fields.number("value", properties.value, &w)
        fields.integer("num_items", properties.numItems, &w)
        fields.string("order_id", properties.orderID, &w)
        fields.string("shop_id", properties.shopID, &w)
        fields.string("description", properties.description, &w)
        fields.string("status", properties.status, &w)
        if let search = properties.searchString {
            fields.string("search_string", search, &w)
            fields.string("query", search, &w)
        }
        for custom in customProperties { fields.key(custom.key, &w); w.value(custom.value) }
        fields.close(&w)

        if let ldu = limitedDataUse {
            w.raw(",\"limited_data_use\":"); w.bool(ldu)
        }
        w.raw(UInt8(ascii: "}"))
    }

    /// The event as compact JSON bytes.
    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 1024)
        encode(into: &w)
        return w.bytes
    }
}

/// Writes the members of one object into the caller's writer, leaving out absent values
/// and the whole object when it would be empty. It holds no copy of the writer (a copy would
/// make every append copy the whole buffer).
private struct FieldList {
    private let opening: StaticString
    private var count = 0

    init(_ opening: StaticString) { self.opening = opening }

    mutating func close(_ w: inout JSONWriter, always: Bool = false) {
        if count > 0 {
            w.raw(UInt8(ascii: "}"))
        } else if always {
            w.raw(opening); w.raw(UInt8(ascii: "}"))
        }
    }

    mutating func key(_ name: StaticString, _ w: inout JSONWriter) {
        if count == 0 { w.member(name, after: opening) } else { w.nextMember(name) }
        count += 1
    }

    /// A configured key (validated at start: letters, digits, underscores).
    mutating func key(_ name: String, _ w: inout JSONWriter) {
        if count == 0 { w.raw(opening) } else { w.raw(UInt8(ascii: ",")) }
        count += 1
        w.string(name)
        w.raw(UInt8(ascii: ":"))
    }

    mutating func string(_ name: StaticString, _ value: String?, _ w: inout JSONWriter) {
        guard let value, !value.isEmpty else { return }
        key(name, &w); w.string(value)
    }

    /// One value as a string, several as an array (TikTok accepts both for hashed fields).
    mutating func strings(_ name: StaticString, _ values: [String], _ w: inout JSONWriter) {
        if values.count == 1 { string(name, values[0], &w) } else { stringArray(name, values, &w) }
    }

    mutating func stringArray(_ name: StaticString, _ values: [String], _ w: inout JSONWriter) {
        guard !values.isEmpty else { return }
        key(name, &w)
        w.raw(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { w.raw(UInt8(ascii: ",")) }
            w.string(v)
        }
        w.raw(UInt8(ascii: "]"))
    }

    mutating func number(_ name: StaticString, _ value: Double?, _ w: inout JSONWriter) {
        guard let value else { return }
        key(name, &w); w.number(value)
    }

    mutating func bool(_ name: StaticString, _ value: Bool?, _ w: inout JSONWriter) {
        guard let value else { return }
        key(name, &w); w.bool(value)
    }

    mutating func integer(_ name: StaticString, _ value: Int64?, _ w: inout JSONWriter) {
        guard let value else { return }
        key(name, &w); w.integer(value)
    }
}
