/// One event of a TikTok Events API 2.0 request (`data[]`), already normalised and hashed.
///
/// Every field that is present is valid by construction: ids are strings, `eventTime` is
/// integer seconds, hashed fields are 64 lowercase hex characters, and absent values are
/// `nil` or empty — the encoder never writes `""` or `null`.
public struct TikTokEvent: Sendable, Equatable {
    public var event: String
    public var eventTime: Int64
    public var eventID: String
    public var user = User()
    public var page = Page(url: "")
    public var properties = Properties()
    public var limitedDataUse: Bool?

    public struct User: Sendable, Equatable {
        public var emails: [String] = []
        public var phones: [String] = []
        public var externalIDs: [String] = []
        public var ttp: String?
        public var ttclid: String?
        public var ip: String?
        public var userAgent: String?
        public var locale: String?
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
    }

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

        var fields = FieldList(writer: w)
        fields.open(",\"user\":{")
        fields.strings("email", user.emails)
        fields.strings("phone", user.phones)
        fields.strings("external_id", user.externalIDs)
        fields.string("ttp", user.ttp)
        fields.string("ttclid", user.ttclid)
        fields.string("ip", user.ip)
        fields.string("user_agent", user.userAgent)
        fields.string("locale", user.locale)
        fields.close()

        fields.open(",\"page\":{")
        fields.string("url", page.url)
        fields.string("referrer", page.referrer)
        fields.close()

        fields.open(",\"properties\":{")
        if !properties.contents.isEmpty {
            fields.key("contents")
            fields.writer.raw(UInt8(ascii: "["))
            for (i, content) in properties.contents.enumerated() {
                if i > 0 { fields.writer.raw(UInt8(ascii: ",")) }
                var inner = FieldList(writer: fields.writer)
                inner.open("{")
                inner.string("content_id", content.contentID)
                inner.string("content_name", content.contentName)
                inner.string("content_category", content.contentCategory)
                inner.string("brand", content.brand)
                inner.number("price", content.price)
                inner.integer("quantity", content.quantity)
                inner.close(always: true)
                fields.writer = inner.writer
            }
            fields.writer.raw(UInt8(ascii: "]"))
        }
        fields.string("content_type", properties.contentType)
        fields.stringArray("content_ids", properties.contentIDs)
        fields.string("currency", properties.currency)
        fields.number("value", properties.value)
        fields.integer("num_items", properties.numItems)
        fields.string("order_id", properties.orderID)
        fields.string("shop_id", properties.shopID)
        fields.string("description", properties.description)
        fields.string("status", properties.status)
        if let search = properties.searchString {
            fields.string("search_string", search)
            fields.string("query", search)
        }
        fields.close()
        w = fields.writer

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

/// Writes the members of one object, leaving out absent values and the whole object when
/// it would be empty.
private struct FieldList {
    var writer: JSONWriter
    private var opening: StaticString = ""
    private var count = 0

    init(writer: JSONWriter) { self.writer = writer }

    mutating func open(_ opening: StaticString) {
        self.opening = opening
        count = 0
    }

    mutating func close(always: Bool = false) {
        if count > 0 {
            writer.raw(UInt8(ascii: "}"))
        } else if always {
            writer.raw(opening); writer.raw(UInt8(ascii: "}"))
        }
    }

    mutating func key(_ name: StaticString) {
        if count == 0 { writer.raw(opening) } else { writer.raw(UInt8(ascii: ",")) }
        count += 1
        writer.raw(UInt8(ascii: "\""))
        writer.raw(name)
        writer.raw("\":")
    }

    mutating func string(_ name: StaticString, _ value: String?) {
        guard let value, !value.isEmpty else { return }
        key(name); writer.string(value)
    }

    /// One value as a string, several as an array (TikTok accepts both for hashed fields).
    mutating func strings(_ name: StaticString, _ values: [String]) {
        if values.count == 1 { string(name, values[0]) } else { stringArray(name, values) }
    }

    mutating func stringArray(_ name: StaticString, _ values: [String]) {
        guard !values.isEmpty else { return }
        key(name)
        writer.raw(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { writer.raw(UInt8(ascii: ",")) }
            writer.string(v)
        }
        writer.raw(UInt8(ascii: "]"))
    }

    mutating func number(_ name: StaticString, _ value: Double?) {
        guard let value else { return }
        key(name); writer.number(value)
    }

    mutating func integer(_ name: StaticString, _ value: Int64?) {
        guard let value else { return }
        key(name); writer.integer(value)
    }
}
