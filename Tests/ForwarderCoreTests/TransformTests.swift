import ForwarderCore
import Testing

private let now: Int64 = 1_795_000_000_000          // 2026-11-18T…Z, Unix ms
private let nowSeconds = now / 1000
private let emailDigest = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"  // john.doe@example.com
private let phoneDigest = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8"  // +33612345678

/// Transforms `json` (a source event) and returns the TikTok event, failing the test otherwise.
private func event(_ json: String, settings: TransformSettings = TransformSettings(), eventID: String = "evt-1",
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> (TikTokEvent, [String]) {
    let outcome = Transformer(settings: settings).transform(payload: json, eventID: eventID, insertedAtMillis: now - 5_000, nowMillis: now)
    guard case .event(let event, let warnings) = outcome else {
        Issue.record("expected an event, got \(outcome)", sourceLocation: sourceLocation)
        throw Unexpected()
    }
    return (event, warnings)
}

private struct Unexpected: Error {}

private func outcome(_ json: String, settings: TransformSettings = TransformSettings()) -> TransformOutcome {
    Transformer(settings: settings).transform(payload: json, eventID: "evt-1", insertedAtMillis: now - 5_000, nowMillis: now)
}

/// A minimal valid source event with `extra` members added.
private func source(_ extra: String = "", name: String = "purchase") -> String {
    #"{"event_name":"\#(name)","url":"https://shop.example/p"\#(extra.isEmpty ? "" : "," + extra)}"#
}

@Suite("Transform: hashing and normalisation")
struct HashingTests {
    @Test("the spec's known digests", arguments: [
        (#""user":{"email":"john.doe@example.com"}"#, "email", emailDigest),
        (#""user":{"email":"  John.Doe@Example.COM\t"}"#, "email", emailDigest),
        (#""user":{"phone":"+33612345678"}"#, "phone", phoneDigest),
    ])
    func knownDigests(field: String, kind: String, digest: String) throws {
        let (e, warnings) = try event(source(field))
        #expect((kind == "email" ? e.user.emails : e.user.phones) == [digest])
        #expect(warnings.isEmpty)
    }

    @Test("phones become E.164 before hashing", arguments: [
        ("+33612345678", nil),
        ("+33 6 12 34 56 78", nil),
        ("(+33) 6-12-34-56-78", nil),
        ("0033612345678", nil),
        ("00 33 6 12 34 56 78", nil),
        ("06 12 34 56 78", "33"),
        ("6.12.34.56.78", "33"),
        ("(0)6 12 34 56 78", "33"),
    ] as [(String, String?)])
    func phoneNormalisation(phone: String, country: String?) throws {
        var settings = TransformSettings()
        settings.defaultPhoneCountryCode = country
        let (e, _) = try event(source(#""user":{"phone":"\#(phone)"}"#), settings: settings)
        #expect(e.user.phones == [phoneDigest])
    }

    @Test("invalid phones are dropped with a warning; the event still goes", arguments: [
        "06 12 34 56 78",        // national, no default country
        "+33 6 12 34",           // too short
        "+1234567890123456",     // 16 digits: too long
        "+33 6 12 34 56 78 ext", // letters
        "33+612345678",          // plus in the middle
    ])
    func invalidPhones(phone: String) throws {
        let (e, warnings) = try event(source(#""user":{"phone":"\#(phone)"}"#))
        #expect(e.user.phones.isEmpty)
        #expect(warnings == ["user.phone: 1 invalid value dropped"])
    }

    @Test("already-hashed values are lowercased, never hashed again")
    func alreadyHashed() throws {
        let upper = emailDigest.uppercased()
        let (e, _) = try event(source(#""user":{"email":"\#(upper)","phone":"\#(phoneDigest)","id":"\#(upper)"}"#))
        #expect(e.user.emails == [emailDigest])
        #expect(e.user.phones == [phoneDigest])
        #expect(e.user.externalIDs == [emailDigest])
    }

    @Test("pre-hashed fields are used when the clear ones are absent")
    func preHashedFields() throws {
        let (flat, _) = try event(source(#""user":{"email_sha256":"\#(emailDigest)","phone_sha256":"\#(phoneDigest.uppercased())"}"#))
        #expect(flat.user.emails == [emailDigest] && flat.user.phones == [phoneDigest])
        let (nested, _) = try event(source(#""properties":{"user":{"email_sha256":"\#(emailDigest)"}}"#))
        #expect(nested.user.emails == [emailDigest])
        let (bad, warnings) = try event(source(#""user":{"email_sha256":"not-a-digest"}"#))
        #expect(bad.user.emails.isEmpty && warnings == ["user.email: 1 invalid value dropped"])
    }

    @Test("arrays: each value normalised and hashed, empties and duplicates dropped")
    func arrays() throws {
        let (e, warnings) = try event(source(#""user":{"email":["john.doe@example.com"," JOHN.DOE@example.com ","",null,"other@example.com"],"phone":["+33612345678","0033 6 12 34 56 78"]}"#))
        #expect(e.user.emails.count == 2)
        #expect(e.user.emails.first == emailDigest)
        #expect(e.user.phones == [phoneDigest])
        #expect(warnings.isEmpty)
    }

    @Test("external ids are trimmed and lowercased before hashing, unless configured not to")
    func externalIDCase() throws {
        let hasher = SHA256Hasher()
        let (lowered, _) = try event(source(#""user":{"id":" CUST-42 "}"#))
        #expect(lowered.user.externalIDs == [hasher.hexDigest("cust-42")])
        var settings = TransformSettings()
        settings.lowercaseExternalID = false
        let (kept, _) = try event(source(#""user":{"id":" CUST-42 "}"#), settings: settings)
        #expect(kept.user.externalIDs == [hasher.hexDigest("CUST-42")])
        let (numeric, _) = try event(source(#""user":{"id":9179124954957}"#))
        #expect(numeric.user.externalIDs == [hasher.hexDigest("9179124954957")])
    }

    @Test("ip, user agent, ttp, ttclid and locale are never hashed")
    func neverHashed() throws {
        let (e, _) = try event(source(#""partners":{"tiktok":{"ttp":"2Nz.ttp","ttclid":"E.C.P.abc"}},"context":{"device":{"ip":"102.3.4.56","user_agent":"Mozilla/5.0 (X11)","lang":"fr_FR"}}"#))
        #expect(e.user.ttp == "2Nz.ttp" && e.user.ttclid == "E.C.P.abc" && e.user.ip == "102.3.4.56")
        #expect(e.user.userAgent == "Mozilla/5.0 (X11)" && e.user.locale == "fr-FR")
        let (v6, _) = try event(source(#""device":{"ip":"2001:db8::1"}"#))
        #expect(v6.user.ip == "2001:db8::1")
        let (bad, warnings) = try event(source(#""device":{"ip":"not an ip"}"#))
        #expect(bad.user.ip == nil && warnings == ["user.ip: not an IPv4 or IPv6 address; dropped"])
    }
}

@Suite("Transform: field mapping")
struct MappingTests {
    @Test("event_time from every source form", arguments: [
        (#""context":{"event_timestamp":"1795000000123"}"#, nowSeconds),          // epoch ms, string
        (#""event_timestamp":1795000000123"#, nowSeconds),                        // epoch ms, number
        (#""timestamp":1794999990"#, nowSeconds - 10),                            // epoch s, number
        (#""timestamp":"1794999990""#, nowSeconds - 10),           // epoch s, string
        (#""timestamp":"2026-11-18T11:06:40Z""#, Int64(1_795_000_000)),           // ISO 8601, Z
        (#""timestamp":"2026-11-18T12:06:40+01:00""#, Int64(1_795_000_000)),      // ISO 8601, offset
        (#""timestamp":"2026-11-18T06:06:40.250-0500""#, Int64(1_795_000_000)),   // fraction, offset without colon
        (#""context":{"event_timestamp":"1795000000123"},"timestamp":1"#, nowSeconds),  // first path wins
        ("", nowSeconds - 5),                                                     // none: the insert time
    ] as [(String, Int64)])
    func eventTime(extra: String, expected: Int64) throws {
        let (e, _) = try event(source(extra))
        #expect(e.eventTime == expected)
    }

    @Test("an unusable event_time falls back to the insert time with a warning")
    func unusableEventTime() throws {
        let (e, warnings) = try event(source(#""timestamp":"2026-11-18T11:06:40""#))  // no offset: ambiguous
        #expect(e.eventTime == nowSeconds - 5)
        #expect(warnings.count == 1 && warnings[0].hasPrefix("event_time:"))
        #expect(EventTime.fromISO8601("2026-02-30T00:00:00Z") == nil)
        #expect(EventTime.fromISO8601("2024-02-29T00:00:00Z") == 1_709_164_800)
    }

    @Test("events older than the maximum age are rejected as expired")
    func expired() {
        guard case .rejected(let reason) = outcome(source(#""timestamp":\#(nowSeconds - 8 * 86_400)"#)) else {
            Issue.record("expected a rejection"); return
        }
        #expect(reason.hasPrefix("expired"))
        var settings = TransformSettings()
        settings.maxEventAgeSeconds = 30 * 86_400
        #expect(outcome(source(#""timestamp":\#(nowSeconds - 8 * 86_400)"#), settings: settings).isEvent)
    }

    @Test("page.url and referrer: nested location object, location string, context.page, flat")
    func page() throws {
        let cases: [(String, String, String?)] = [
            (#""page":{"location":{"href":"https://a.example/1"},"referrer":"https://r.example/"}"#, "https://a.example/1", "https://r.example/"),
            (#""page":{"location":"https://a.example/2"}"#, "https://a.example/2", nil),
            (#""context":{"page":{"url":"https://a.example/3","referrer":"https://r.example/3"}}"#, "https://a.example/3", "https://r.example/3"),
            (#""referrer":"https://r.example/4""#, "https://shop.example/p", "https://r.example/4"),
        ]
        for (extra, url, referrer) in cases {
            let (e, _) = try event(source(extra))
            #expect(e.page.url == url && e.page.referrer == referrer, "\(extra)")
        }
    }

    @Test("no page URL: rejected with the reason, unless a default is configured")
    func missingPageURL() throws {
        let noURL = #"{"event_name":"purchase"}"#
        guard case .rejected(let reason) = outcome(noURL) else { Issue.record("expected a rejection"); return }
        #expect(reason.contains("page URL"))
        var settings = TransformSettings()
        settings.defaultPageURL = "https://shop.example/"
        let (e, _) = try event(noURL, settings: settings)
        #expect(e.page.url == "https://shop.example/")
    }

    @Test("ttclid: partners over cookie over URL; ttp: partners over cookie; both percent-decoded")
    func clickIDPrecedence() throws {
        let url = #""url":"https://s.example/?a=1&ttclid=from%2Durl#frag""#
        let cookie = #""context":{"device":{"cookie":"_ga=1; ttclid=from%2Dcookie; _ttp=ttp%3Dcookie"}}"#
        let partners = #""partners":{"tiktok":{"ttclid":"from-partners","ttp":"ttp-partners"}}"#
        let all = #"{"event_name":"purchase",\#(url),\#(cookie),\#(partners)}"#
        let noPartners = #"{"event_name":"purchase",\#(url),\#(cookie)}"#
        let onlyURL = #"{"event_name":"purchase",\#(url)}"#
        #expect(try event(all).0.user.ttclid == "from-partners")
        #expect(try event(all).0.user.ttp == "ttp-partners")
        #expect(try event(noPartners).0.user.ttclid == "from-cookie")
        #expect(try event(noPartners).0.user.ttp == "ttp=cookie")
        #expect(try event(onlyURL).0.user.ttclid == "from-url")
        #expect(try event(onlyURL).0.user.ttp == nil)
        let cookiesObject = #"{"event_name":"purchase","url":"https://s.example/","cookies":{"_ttp":"obj%20ttp","ttclid":"obj-clid"}}"#
        #expect(try event(cookiesObject).0.user.ttp == "obj ttp")
        #expect(try event(cookiesObject).0.user.ttclid == "obj-clid")
    }

    @Test("items become contents, content_ids, num_items and a default content_type")
    func contents() throws {
        let items = #""items":[{"id":"SKU_1","quantity":"2","price":"9.99","product":{"id":"P1","name":"Tee","category_1":"clothes","brand":"Lacoste","price":12}},{"product":{"id":12345,"price":5},"quantity":1.0},{"id":"SKU_3","quantity":1.5,"price":"9,99"}]"#
        let (e, warnings) = try event(source(items))
        let contents = e.properties.contents
        #expect(contents.count == 3)
        #expect(contents[0] == TikTokEvent.Content(contentID: "SKU_1", contentName: "Tee", contentCategory: "clothes", brand: "Lacoste", price: 9.99, quantity: 2))
        #expect(contents[1] == TikTokEvent.Content(contentID: "12345", price: 5, quantity: 1))
        #expect(contents[2] == TikTokEvent.Content(contentID: "SKU_3"))
        #expect(e.properties.contentIDs == ["SKU_1", "12345", "SKU_3"])
        #expect(e.properties.numItems == 3)
        #expect(e.properties.contentType == "product")
        #expect(warnings.sorted() == ["properties.contents.price: 1 not a number; dropped", "properties.contents.quantity: 1 not an integer; dropped"])
        var settings = TransformSettings()
        settings.contentType = .productGroup
        #expect(try event(source(items), settings: settings).0.properties.contentType == "product_group")
        #expect(try event(source(items + #","content_type":"product_group""#)).0.properties.contentType == "product_group")
    }

    @Test("commerce properties: currency, value, order id, search, status, shop id, description, ldu")
    func properties() throws {
        let (e, warnings) = try event(source(#""id":9179124954957,"value":"22.53","currency":" eur ","search_term":"red shoes","status":"paid","partners":{"tiktok":{"shop_id":"S1","ldu":true}}"#))
        #expect(e.properties.orderID == "9179124954957")
        #expect(e.properties.value == 22.53)
        #expect(e.properties.currency == "EUR")
        #expect(e.properties.searchString == "red shoes")
        #expect(e.properties.status == "paid")
        #expect(e.properties.shopID == "S1")
        #expect(e.properties.description == "purchase")
        #expect(e.limitedDataUse == true)
        #expect(warnings.isEmpty)
        let encoded = String(decoding: e.encoded(), as: UTF8.self)
        #expect(encoded.contains(#""search_string":"red shoes","query":"red shoes""#))
        #expect(encoded.contains(#""order_id":"9179124954957""#))
    }

    @Test("invalid optional fields are dropped with a warning; the event still goes")
    func invalidOptionalFields() throws {
        let (e, warnings) = try event(source(#""value":"1,234.50","currency":"XYZ","partners":{"tiktok":{"ldu":"maybe"}},"content_type":"sku","items":{"not":"an array"}"#))
        #expect(e.properties.value == nil && e.properties.currency == nil && e.limitedDataUse == nil && e.properties.contents.isEmpty)
        #expect(warnings.count == 5)
    }

    @Test("the nested (server-side v2) envelope works without configuration")
    func nestedEnvelope() throws {
        let json = #"{"event_name":"add_to_cart","event_timestamp":1795000000000,"properties":{"id":"O1","value":10,"currency":"USD","items":[{"id":"A","quantity":1,"price":10}],"user":{"email":"john.doe@example.com","phone":"+33612345678","id":"u1"},"search_term":"q"},"page":{"location":"https://s.example/c?ttclid=T1","referrer":"https://s.example/"},"device":{"ip":"1.2.3.4","user_agent":"UA","lang":"en-US","cookie":"_ttp=TTP1"}}"#
        let (e, warnings) = try event(json)
        #expect(e.event == "AddToCart" && e.eventTime == nowSeconds)
        #expect(e.user.emails == [emailDigest] && e.user.phones == [phoneDigest] && e.user.externalIDs.count == 1)
        #expect(e.user.ttp == "TTP1" && e.user.ttclid == "T1" && e.user.ip == "1.2.3.4" && e.user.userAgent == "UA" && e.user.locale == "en-US")
        #expect(e.page.url == "https://s.example/c?ttclid=T1")
        #expect(e.properties.orderID == "O1" && e.properties.value == 10 && e.properties.currency == "USD" && e.properties.contentIDs == ["A"])
        #expect(e.properties.searchString == "q")
        #expect(warnings.isEmpty)
    }

    @Test("smart mapping replaces source paths or sets constants")
    func smartMapping() throws {
        var settings = TransformSettings()
        settings.mapping[.userEmail] = FieldSource.parsePaths("customer.contact.mail")
        settings.mapping[.userLocale] = .constant(.string("fr-FR"))
        settings.mapping[.pageURL] = FieldSource.parsePaths("links.0.href, url")
        let (e, _) = try event(#"{"event_name":"purchase","user":{"email":"ignored@example.com"},"customer":{"contact":{"mail":"John.Doe@example.com"}},"links":[{"href":"https://l.example/"}]}"#, settings: settings)
        #expect(e.user.emails == [emailDigest])
        #expect(e.user.locale == "fr-FR")
        #expect(e.page.url == "https://l.example/")
        #expect(FieldSource.parsePaths("a..b") == nil)
    }
}

@Suite("Transform: event names, skips and rejects")
struct EventNameTests {
    @Test("the classic preset (default)", arguments: [
        ("add_payment_info", "AddPaymentInfo"), ("add_to_cart", "AddToCart"), ("add_to_wishlist", "AddToWishlist"),
        ("begin_checkout", "InitiateCheckout"), ("click_button", "ClickButton"), ("purchase", "CompletePayment"),
        ("complete_payment", "CompletePayment"), ("contact", "Contact"), ("download", "Download"),
        ("page_view", "ViewContent"), ("search", "Search"), ("sign_up", "CompleteRegistration"),
        ("submit_form", "SubmitForm"), ("subscribe", "Subscribe"),
    ])
    func classic(source name: String, tiktok: String) throws {
        #expect(try event(source(name: name)).0.event == tiktok)
    }

    @Test("the current preset", arguments: [
        ("click_button", "ViewContent"), ("purchase", "Purchase"), ("complete_payment", "Purchase"),
        ("view_item", "ViewContent"), ("view_content", "ViewContent"), ("submit_form", "Lead"),
        ("generate_lead", "Lead"), ("start_trial", "StartTrial"), ("application_approval", "ApplicationApproval"),
        ("customize_product", "CustomizeProduct"), ("find_location", "FindLocation"), ("schedule", "Schedule"),
        ("submit_application", "SubmitApplication"), ("begin_checkout", "InitiateCheckout"),
    ])
    func current(source name: String, tiktok: String) throws {
        var settings = TransformSettings()
        settings.preset = .current
        #expect(try event(source(name: name), settings: settings).0.event == tiktok)
    }

    @Test("classic has no mapping for names only the current preset knows", arguments: ["view_item", "generate_lead", "start_trial", "schedule"])
    func classicSkips(name: String) {
        #expect(outcome(source(name: name)) == .skipped(reason: "event name '\(name)' has no TikTok mapping"))
    }

    @Test("overrides win over the preset; unmapped names are skipped or forwarded verbatim")
    func overridesAndUnmapped() throws {
        var settings = TransformSettings()
        settings.eventNames = ["purchase": "Purchase", "newsletter": "Subscribe"]
        #expect(try event(source(name: "purchase"), settings: settings).0.event == "Purchase")
        #expect(try event(source(name: "newsletter"), settings: settings).0.event == "Subscribe")
        #expect(outcome(source(name: "wishlist_share")) == .skipped(reason: "event name 'wishlist_share' has no TikTok mapping"))
        settings.forwardUnmapped = true
        #expect(try event(source(name: "wishlist_share"), settings: settings).0.event == "wishlist_share")
    }

    @Test("payloads that can never be sent are rejected with a reason", arguments: [
        ("not json at all", "payload is not JSON"),
        ("[1,2,3]", "payload is not a JSON object"),
        (#"{"value":1}"#, "payload has no event_name"),
        (#"{"event_name":42}"#, "event_name is not a string"),
        (#"{"event_name":"  "}"#, "event_name is empty"),
        (#"{"event_name":"purchase","url":"https://s.example/","timestamp":1000000000}"#, "expired"),
    ])
    func rejects(payload: String, reasonPrefix: String) {
        guard case .rejected(let reason) = outcome(payload) else { Issue.record("expected a rejection"); return }
        #expect(reason.hasPrefix(reasonPrefix), "\(reason)")
    }

    @Test("the row's event_id is the dedup key, as a string, whatever the payload says")
    func eventIDFromRow() throws {
        let (e, _) = try event(source(#""context":{"event_id":"payload-id"},"event_id":123"#), eventID: "row-id")
        #expect(e.eventID == "row-id")
    }
}

extension TransformOutcome {
    var isEvent: Bool { if case .event = self { true } else { false } }
}
