import ForwarderCore
import Testing

private let now: Int64 = 1_795_000_000_000

private func transform(_ json: String, settings: TransformSettings = TransformSettings()) -> TransformOutcome {
    Transformer(settings: settings).transform(payload: json, eventID: "evt-1", insertedAtMillis: now - 5_000, nowMillis: now)
}

private func event(_ json: String, settings: TransformSettings = TransformSettings(), sourceLocation: SourceLocation = #_sourceLocation) -> TikTokEvent? {
    guard case .event(let event, _) = transform(json, settings: settings) else {
        Issue.record("expected an event: \(transform(json, settings: settings))", sourceLocation: sourceLocation)
        return nil
    }
    return event
}

/// The transform's edge cases, by class (issue: "fix the class, not one input").
@Suite("Transform edge cases, by class")
struct TransformEdgeCaseTests {
    static let e164 = "+33612345678"

    @Test("phone separators: any Unicode white space and any dash between digit groups", arguments: [
        "+33\u{00A0}6\u{00A0}12\u{00A0}34\u{00A0}56\u{00A0}78",  // no-break space
        "+33\u{202F}6\u{202F}12\u{202F}34\u{202F}56\u{202F}78",  // narrow no-break space
        "+33\u{2009}612\u{2009}345\u{2009}678",                  // thin space
        "+33\u{3000}612345678",                                  // ideographic space
        "+33\u{2010}6\u{2010}12\u{2010}34\u{2010}56\u{2010}78",  // hyphen
        "+33\u{2013}6\u{2013}12345678",                          // en dash
        "+33\u{2014}612345678",                                  // em dash
        "+33\u{2212}612345678",                                  // minus sign
        "+33 6-12.34/56 78", "(+33) 6 12 34 56 78", "+33\u{000B}612345678",
    ])
    func phoneSeparators(_ raw: String) {
        #expect(Normalise.phone(raw, defaultCountryCode: nil) == Self.e164, "\(raw.unicodeScalars.map { String($0.value, radix: 16) })")
    }

    @Test("the national trunk 0 in brackets after the country code is dropped", arguments: [
        ("+33 (0)6 12 34 56 78", "+33612345678"), ("+33(0)612345678", "+33612345678"), ("+44 (0)20 7946 0958", "+442079460958"),
        ("+49 (0)30 123456", "+4930123456"), ("0033 (0)6 12 34 56 78", "+33612345678"), ("06 12 34 (0)5 67", nil),
    ])
    func trunkZero(_ raw: String, _ expected: String?) {
        #expect(Normalise.phone(raw, defaultCountryCode: nil) == expected)
    }

    @Test("still refused: letters, a plus in the middle, too short or too long", arguments: [
        "+33 6 12 34 56 7a", "33+612345678", "+33 61", "+1234567890123456", "call me",
    ])
    func phoneRefusals(_ raw: String) {
        #expect(Normalise.phone(raw, defaultCountryCode: "33") == nil)
    }

    @Test("epoch times written in exponent form (Java/Jackson doubles) are times", arguments: [
        ("1.639044446636E12", Int64(1_639_044_446)), ("1.639044446636e12", 1_639_044_446), ("1.639044446E9", 1_639_044_446),
        ("1.639044446636E+12", 1_639_044_446), ("16.39044446636e11", 1_639_044_446),
    ])
    func exponentTimes(_ literal: String, _ seconds: Int64) throws {
        #expect(EventTime.seconds(from: try JSONParser.parse(literal)) == seconds)
        #expect(EventTime.seconds(from: .string(literal)) == seconds)
        let e = event(#"{"event_name":"purchase","url":"https://s.example/","context":{"event_timestamp":\#(literal)}}"#, settings: {
            var s = TransformSettings(); s.maxEventAgeSeconds = Int64.max / 2; return s
        }())
        #expect(e?.eventTime == seconds)
    }

    @Test("a path whose value has no usable text falls through to the next path", arguments: [
        ##""page":{"location":{"hash":"#x"}},"url":"https://shop.example/p""##,
        #""page":{"location":{"href":"   "}},"context":{"page":{"url":"https://shop.example/p"}}"#,
        #""page":{"location":[]},"url":"https://shop.example/p""#,
        #""page":{"location":{"href":{"nested":true}}},"url":"https://shop.example/p""#,
    ])
    func fallThrough(_ members: String) {
        #expect(event(#"{"event_name":"purchase",\#(members)}"#)?.page.url == "https://shop.example/p")
    }

    @Test("white space is one definition: a value of tabs, VT, FF or Unicode spaces is absent and never hides the next path", arguments: [
        "\u{000B}", "\u{000C}", "\t\u{000B}\u{000C}\r\n ", "\u{00A0}", "\u{2003}\u{3000}",
    ])
    func blankValues(_ blank: String) throws {
        #expect(!Normalise.isPresent(.string(blank)) && blank.trimmingWhitespace().isEmpty)
        let payload = JSON.object(JSONObject(keys: ["event_name", "url", "user", "properties"], values: [
            .string("purchase"), .string("https://s.example/"),
            .object(JSONObject(keys: ["email"], values: [.string(blank)])),
            .object(JSONObject(keys: ["user"], values: [.object(JSONObject(keys: ["email"], values: [.string("Jo@Example.com")]))])),
        ]))
        guard case .event(let e, _) = Transformer().transform(source: payload, eventID: "e", insertedAtMillis: now, nowMillis: now) else {
            Issue.record("not an event"); return
        }
        #expect(e.user.emails == [SHA256Hasher().hexDigest("jo@example.com")])
    }

    @Test("a ttclid in the URL fragment is not a query parameter", arguments: [
        ("https://shop.example/#/checkout?ttclid=FRAG", nil as String?),
        ("https://shop.example/p#ttclid=FRAG", nil),
        ("https://shop.example/p?x=1#/route?ttclid=FRAG", nil),
        ("https://shop.example/p?ttclid=REAL#/route?ttclid=FRAG", "REAL"),
        ("https://shop.example/p?a=1&ttclid=REAL", "REAL"),
    ])
    func fragment(_ url: String, _ expected: String?) {
        #expect(event(#"{"event_name":"purchase","url":"\#(url)"}"#)?.user.ttclid == expected)
    }

    @Test("an event name mapped to nothing is skipped, never sent blank or as \"null\"")
    func mappedToNothing() {
        var settings = TransformSettings()
        settings.eventNames["page_view"] = TransformSettings.doNotSend
        guard case .skipped(let reason) = transform(#"{"event_name":"page_view","url":"https://s.example/"}"#, settings: settings) else {
            Issue.record("not skipped"); return
        }
        #expect(reason.contains("mapped to nothing"))
        #expect(settings.tiktokName(for: "page_view") == nil)
        settings.forwardUnmapped = true
        guard case .skipped = transform(#"{"event_name":"page_view","url":"https://s.example/"}"#, settings: settings) else {
            Issue.record("forward_unmapped must not send an event mapped to nothing"); return
        }
    }
}

@Suite("Custom event and user properties")
struct CustomPropertyTests {
    @Test("custom properties come from paths or constants, strings trimmed, absent ones left out; a hashed user property is SHA-256")
    func customProperties() throws {
        var settings = TransformSettings()
        settings.customFields = [
            CustomField(object: .properties, key: "brand_tier", source: .paths([["customer", "tier"], ["tier"]])),
            CustomField(object: .properties, key: "channel", source: .constant(.string("app"))),
            CustomField(object: .properties, key: "missing", source: .paths([["nope"]])),
            CustomField(object: .user, key: "loyalty_id", source: .paths([["user", "loyalty"]]), hashed: true),
            CustomField(object: .user, key: "segment", source: .paths([["segment"]])),
        ]
        let json = #"{"event_name":"purchase","url":"https://s.example/","tier":"  gold  ","segment":7,"user":{"loyalty":" LOY-42 "}}"#
        guard case .event(let event, _) = Transformer(settings: settings).transform(payload: json, eventID: "e", insertedAtMillis: now, nowMillis: now) else {
            Issue.record("not an event"); return
        }
        #expect(event.customProperties == [.init(key: "brand_tier", value: .string("gold")), .init(key: "channel", value: .string("app"))])
        #expect(event.customUser == [.init(key: "loyalty_id", value: .string(SHA256Hasher().hexDigest("loy-42"))), .init(key: "segment", value: .number("7"))])
        var w = JSONWriter()
        event.encode(into: &w)
        let sent = try JSONParser.parse(w.bytes)
        #expect(sent.value(at: ["properties", "brand_tier"]) == .string("gold") && sent.value(at: ["user", "segment"]) == .number("7"))
        #expect(!String(decoding: w.bytes, as: UTF8.self).contains("LOY-42"), "a hashed custom property leaves the process hashed")
        let request = try JSONParser.parse(TrackRequest.body(sourceID: "P", testEventCode: nil, events: [w.bytes]))
        #expect(TrackRequestValidator.firstProblem(in: request) == nil)
    }

    @Test("only keys outside TikTok's own, of letters, digits and underscores, are custom", arguments: [
        ("properties.brand_tier", true), ("user.loyalty_id", true), ("properties.currency", false), ("user.email", false),
        ("properties.has space", false), ("page.custom", false), ("properties.", false), ("user.a.b", false),
    ])
    func customKeys(_ target: String, _ custom: Bool) {
        #expect((CustomField.parse(target) != nil) == custom)
    }
}

@Suite("Transform internals")
struct TransformInternalsTests {
    @Test("a target field's ordinal is its position in allCases (the mapping plan indexes by it)")
    func ordinals() {
        #expect(MemoryLayout<TargetField>.size == 1)
        #expect(TargetField.allCases.enumerated().allSatisfy { $0.offset == $0.element.ordinal })
    }

    @Test("IP addresses: dotted quads of 0-255 and IPv6 forms; nothing else", arguments: [
        ("1.2.3.4", true), ("255.255.255.255", true), ("01.2.3.4", true), ("102.3.4.56", true), ("::1", true), ("2001:db8::7", true),
        ("::ffff:1.2.3.4", true), ("256.1.1.1", false), ("1.2.3", false), ("1.2.3.4.5", false), ("1..2.3", false), ("1.2.3.4.", false),
        (".1.2.3", false), ("", false), ("1.2.3.x", false), ("1234.1.1.1", false), ("fe80::1%eth0", false), (":", false), ("1:2", false),
    ])
    func ipAddresses(text: String, valid: Bool) {
        #expect(Normalise.isIPAddress(text) == valid)
    }
}
