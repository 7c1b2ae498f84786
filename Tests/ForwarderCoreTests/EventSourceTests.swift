import ForwarderCore
import Foundation
import Testing

private let now: Int64 = 1_795_000_000_000

private func settings(_ source: EventSourceSetting, _ configure: (inout TransformSettings) -> Void = { _ in }) -> TransformSettings {
    var s = TransformSettings()
    s.eventSource = source
    configure(&s)
    return s
}

private func outcome(_ json: String, _ settings: TransformSettings) -> TransformOutcome {
    Transformer(settings: settings).transform(payload: json, eventID: "evt-1", insertedAtMillis: now - 5_000, nowMillis: now)
}

private func event(_ json: String, _ settings: TransformSettings, sourceLocation: SourceLocation = #_sourceLocation) throws -> (TikTokEvent, [String]) {
    let result = outcome(json, settings)
    guard case .event(let event, let warnings) = result else {
        Issue.record("expected an event, got \(result)", sourceLocation: sourceLocation)
        throw Failure()
    }
    return (event, warnings)
}

private struct Failure: Error {}

/// The request TikTok would get for this event alone, and the sandbox's verdict on it.
private func verdict(_ event: TikTokEvent, id: String) throws -> String? {
    TrackRequestValidator.firstProblem(in: try JSONParser.parse(TrackRequest.body(source: event.source, sourceID: id, testEventCode: nil, events: [event.encoded()])))
}

private let appEvent = #"""
{"event_name":"sign_up","context":{"app":{"namespace":"com.shop.app","name":"Shop","version":"4.2.0"},
 "device":{"os":{"name":"iOS","version":"17.4"},"advertising_id":"6d92078a-8246-4ba4-ae5b-76104861e7dc","idfv":"AB12CD34-0000-4000-8000-00000000AAAA",
           "att_status":"authorized","ip":"102.3.4.56","user_agent":"Shop/4.2 CFNetwork"}},
 "partners":{"tiktok":{"ttp":"must-not-go","ad":{"callback":"cb-1","campaign_id":"c-9","is_retargeting":"false","attributed":true}}},
 "user":{"email":"john.doe@example.com","id":"u-1"},"url":"https://shop.example/app-landing?ttclid=NOPE"}
"""#

@Suite("Event sources: web, app, offline, CRM and autodiscovery")
struct EventSourceTests {
    @Test("an app event carries app, ad and device ids, the app name of its event, and nothing web-only")
    func app() throws {
        let (e, warnings) = try event(appEvent, settings(.app))
        #expect(warnings.isEmpty, "\(warnings)")
        #expect(e.source == .app && e.event == "Registration")
        #expect(e.app == TikTokEvent.App(appID: "com.shop.app", appName: "Shop", appVersion: "4.2.0"))
        #expect(e.user.idfa == "6D92078A-8246-4BA4-AE5B-76104861E7DC", "IDFA uppercase (iOS)")
        #expect(e.user.gaid == nil && e.user.idfv == "AB12CD34-0000-4000-8000-00000000AAAA" && e.user.attStatus == "AUTHORIZED")
        #expect(e.ad.callback == "cb-1" && e.ad.campaignID == "c-9" && e.ad.isRetargeting == false && e.ad.attributed == true)
        #expect(e.page.url.isEmpty && e.user.ttp == nil && e.user.ttclid == nil, "page, ttp and ttclid are web-only")
        #expect(e.user.emails.count == 1 && e.user.externalIDs.count == 1)
        #expect(try verdict(e, id: "7123456789") == nil)
        let body = String(decoding: e.encoded(), as: UTF8.self)
        #expect(body.contains(#""app":{"app_id":"com.shop.app","app_name":"Shop","app_version":"4.2.0"}"#) && !body.contains(#""page""#))
    }

    @Test("the advertising id goes to gaid (lowercase) on Android, nowhere without a platform; all zeros is no id", arguments: [
        (#""os":"Android 14""#, "6D92078A-8246-4BA4-AE5B-76104861E7DC", nil, "6d92078a-8246-4ba4-ae5b-76104861e7dc", false),
        (#""os":{"name":"iPadOS"}"#, "6d92078a-8246-4ba4-ae5b-76104861e7dc", "6D92078A-8246-4BA4-AE5B-76104861E7DC", nil, false),
        (#""model":"x""#, "6d92078a-8246-4ba4-ae5b-76104861e7dc", nil, nil, true),
        (#""os":"iOS""#, "00000000-0000-0000-0000-000000000000", nil, nil, true),
        (#""os":"iOS""#, "not-an-id", nil, nil, true),
        (#""os":"iOS""#, "A3F5E1C2B4D6A8F0E2C4B6D8F0A2C4E6B8D0F2A4C6E8B0D2F4A6C8E0B2D4F6A8", "a3f5e1c2b4d6a8f0e2c4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8", nil, false),
    ] as [(String, String, String?, String?, Bool)])
    func advertisingID(device: String, id: String, idfa: String?, gaid: String?, warned: Bool) throws {
        let json = #"{"event_name":"launch_app","context":{"app":{"namespace":"com.a"},"device":{\#(device),"advertising_id":"\#(id)"}}}"#
        let (e, warnings) = try event(json, settings(.app))
        #expect(e.event == "LaunchAPP")
        #expect(e.user.idfa == idfa && e.user.gaid == gaid)
        #expect(warnings.contains { $0.hasPrefix("user.idfa") || $0.hasPrefix("user.gaid") } == warned, "\(warnings)")
        #expect(try verdict(e, id: "7123456789") == nil)
    }

    @Test("att_status in TikTok's, Apple's and numeric forms", arguments: [
        ("AUTHORIZED", "AUTHORIZED"), ("authorized", "AUTHORIZED"), ("notDetermined", "NOT_DETERMINED"), ("not_determined", "NOT_DETERMINED"),
        ("0", "NOT_DETERMINED"), ("1", "RESTRICTED"), ("2", "DENIED"), ("3", "AUTHORIZED"), ("Not Applicable", "NOT_APPLICABLE"), ("maybe", nil),
    ] as [(String, String?)])
    func attStatus(raw: String, expected: String?) throws {
        let (e, warnings) = try event(#"{"event_name":"login","context":{"app":{"namespace":"com.a"},"device":{"att_status":"\#(raw)"}}}"#, settings(.app))
        #expect(e.user.attStatus == expected)
        #expect(warnings.isEmpty == (expected != nil))
    }

    @Test("app event names apply to app events only; app events without an app id are refused")
    func appNames() throws {
        #expect(try event(#"{"event_name":"login","context":{"app":{"namespace":"a"}}}"#, settings(.app)).0.event == "Login")
        #expect(try event(#"{"event_name":"achieve_level","context":{"app":{"namespace":"a"}}}"#, settings(.app)).0.event == "AchieveLevel")
        #expect(try event(#"{"event_name":"generate_lead","context":{"app":{"namespace":"a"}}}"#, settings(.app)).0.event == "GenerateLead")
        #expect(try event(#"{"event_name":"purchase","context":{"app":{"namespace":"a"}}}"#, settings(.app)).0.event == "CompletePayment", "web names too")
        guard case .skipped = outcome(#"{"event_name":"login","url":"https://s.example/"}"#, settings(.web)) else { Issue.record("login is an app name"); return }
        guard case .rejected(let reason) = outcome(#"{"event_name":"login"}"#, settings(.app)) else { Issue.record("no app id"); return }
        #expect(reason.contains("app.app_id"))
    }

    @Test("autodiscovery: partners.tiktok.event_source, else app for a non-empty context.app, else web", arguments: [
        (#"{"event_name":"purchase","url":"https://s.example/"}"#, EventSource.web),
        (#"{"event_name":"purchase","url":"https://s.example/","context":{"app":{}}}"#, .web),
        (#"{"event_name":"purchase","context":{"app":{"namespace":"com.a"}}}"#, .app),
        (#"{"event_name":"purchase","partners":{"tiktok":{"event_source":"OFFLINE"}}}"#, .offline),
        (#"{"event_name":"purchase","url":"https://s.example/","partners":{"tiktok":{"event_source":"tv"}},"context":{"app":{"namespace":"a"}}}"#, .app),
    ])
    func autodiscovery(json: String, expected: EventSource) throws {
        #expect(try event(json, settings(.auto)).0.source == expected)
        #expect(try event(json, settings(.auto)).0.source == Transformer(settings: settings(.auto)).eventSource(of: try JSONParser.parse(json)))
    }

    @Test("a fixed source wins over the event's own hint")
    func fixedWins() throws {
        let json = #"{"event_name":"purchase","url":"https://s.example/","partners":{"tiktok":{"event_source":"app"}}}"#
        #expect(try event(json, settings(.web)).0.source == .web)
    }

    @Test("offline events: standard names only, no page, matching keys hashed")
    func offline() throws {
        let json = #"{"event_name":"purchase","id":"O-1","value":"19.90","currency":"eur","user":{"phone":"+33 6 12 34 56 78"},"url":"https://s.example/"}"#
        let (e, _) = try event(json, settings(.offline))
        #expect(e.source == .offline && e.event == "CompletePayment" && e.page.url.isEmpty && e.user.phones.count == 1)
        #expect(try verdict(e, id: "7000000000000000001") == nil)
        let custom = settings(.offline) { $0.forwardUnmapped = true }
        guard case .rejected(let reason) = outcome(#"{"event_name":"store_visit"}"#, custom) else { Issue.record("a custom offline name"); return }
        #expect(reason.contains("standard event names only"))
    }

    @Test("CRM events: the producer's own (custom) names, the lead object; a standard name or no lead id is refused")
    func crm() throws {
        let json = #"{"event_name":"lead_qualified","lead_id":"L-77","lead_event_source":"salesforce","user":{"email":"john.doe@example.com"}}"#
        let (e, _) = try event(json, settings(.crm))
        #expect(e.source == .crm && e.event == "lead_qualified")
        #expect(e.lead == TikTokEvent.Lead(leadID: "L-77", leadEventSource: "salesforce"))
        #expect(try verdict(e, id: "7000000000000000002") == nil)
        let mapped = settings(.crm) { $0.eventNames["lead_qualified"] = "Lead" }
        guard case .rejected(let standard) = outcome(json, mapped) else { Issue.record("a standard CRM name"); return }
        #expect(standard.contains("custom event names only"))
        guard case .rejected(let noLead) = outcome(#"{"event_name":"lead_won"}"#, settings(.crm)) else { Issue.record("no lead id"); return }
        #expect(noLead.contains("lead.lead_id"))
    }

    @Test("the sandbox enforces each source's rules", arguments: [
        (#"{"event_source":"web","event_source_id":"7123456789","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","page":{"url":"u"}}]}"#, "event_source_id: Invalid value"),
        (#"{"event_source":"app","event_source_id":"CPIXEL","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","app":{"app_id":"x"}}]}"#, "event_source_id: Invalid value"),
        (#"{"event_source":"app","event_source_id":"712","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a"}]}"#, "data.0.app.app_id: required"),
        (#"{"event_source":"app","event_source_id":"712","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","app":{"app_id":"x"},"user":{"ttp":"t"}}]}"#, "data.0.user.ttp: only for web"),
        (#"{"event_source":"app","event_source_id":"712","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","app":{"app_id":"x"},"user":{"idfa":"6d92078a-8246-4ba4-ae5b-76104861e7dc"}}]}"#, "data.0.user.idfa: must be a device id"),
        (#"{"event_source":"app","event_source_id":"712","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","app":{"app_id":"x"},"ad":{"attributed":"yes"}}]}"#, "data.0.ad.attributed: not a boolean"),
        (#"{"event_source":"web","event_source_id":"CP","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","page":{"url":"u"},"user":{"gaid":"x"}}]}"#, "data.0.user.gaid: only for app"),
        (#"{"event_source":"web","event_source_id":"CP","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","page":{"url":"u"},"lead":{"lead_id":"1"}}]}"#, "data.0.lead: only for CRM"),
        (#"{"event_source":"offline","event_source_id":"700","data":[{"event":"StoreVisit","event_time":1795000000,"event_id":"a"}]}"#, "data.0.event: offline events take standard"),
        (#"{"event_source":"crm","event_source_id":"700","data":[{"event":"Lead","event_time":1795000000,"event_id":"a","lead":{"lead_id":"1"}}]}"#, "data.0.event: CRM events take custom"),
        (#"{"event_source":"crm","event_source_id":"700","data":[{"event":"lead_won","event_time":1795000000,"event_id":"a"}]}"#, "data.0.lead.lead_id: required"),
        (#"{"event_source":"web","event_source_id":"CP","data":[{"event":"Purchase","event_time":1795000000,"event_id":"a","page":{"url":"u"},"properties":{"contents":[{"content_type":"sku"}]}}]}"#, "data.0.properties.contents.0.content_type"),
    ])
    func sandboxRules(request: String, problem: String) throws {
        let found = TrackRequestValidator.firstProblem(in: try JSONParser.parse(request))
        #expect(found?.hasPrefix(problem) == true, "\(found ?? "no problem found")")
    }
}

@Suite("Smart mapping v2")
struct SmartMappingTests {
    private static let ga4 = #"""
    {"event_name":"purchase","url":"https://s.example/","ecommerce":{"transaction_id":"T-1","value":30.5,"currency":"EUR",
     "items":[{"item_id":"SKU-1","item_name":"Tee","item_brand":"Acme","item_category":"shirts","price":"10.25","quantity":"2","item_type":"product_group"},
              {"item_id":"SKU-2","item_name":"Cap","price":"ten","quantity":1}]}}
    """#

    @Test("GA4-style items: each content field from its own item paths, per-item content_type")
    func perItemPaths() throws {
        var s = TransformSettings()
        s.mapping[.contents] = .paths([["ecommerce", "items"]])
        s.mapping[.itemID] = .paths([["item_id"]])
        s.mapping[.itemName] = .paths([["item_name"]])
        s.mapping[.itemBrand] = .paths([["item_brand"]])
        s.mapping[.itemCategory] = .paths([["item_category"]])
        s.mapping[.itemContentType] = .paths([["item_type"]])
        s.mapping[.value] = .paths([["ecommerce", "value"]])
        let (e, warnings) = try event(Self.ga4, s)
        #expect(e.properties.contents == [
            TikTokEvent.Content(contentID: "SKU-1", contentName: "Tee", contentCategory: "shirts", brand: "Acme", price: 10.25, quantity: 2, contentType: "product_group"),
            TikTokEvent.Content(contentID: "SKU-2", contentName: "Cap", quantity: 1),
        ])
        #expect(e.properties.contentIDs == ["SKU-1", "SKU-2"] && e.properties.numItems == 2 && e.properties.value == 30.5)
        #expect(warnings == ["properties.contents.price: 1 not a number; dropped"])
        #expect(try verdict(e, id: "CPIXEL") == nil)
    }

    @Test("a constant per item, and a path list with a constant fallback")
    func constantsAndFallbacks() throws {
        var s = TransformSettings()
        s.mapping[.itemContentType] = .constant(.string("product"))
        s.mapping[.currency] = FieldSource(paths: [["ecommerce", "currency"], ["cart", "currency"]], constant: .string("USD"))
        let withCurrency = try event(#"{"event_name":"purchase","url":"https://s.example/","cart":{"currency":"gbp"},"items":[{"id":"A"}]}"#, s).0
        #expect(withCurrency.properties.currency == "GBP" && withCurrency.properties.contents.first?.contentType == "product")
        let without = try event(#"{"event_name":"purchase","url":"https://s.example/","cart":{"currency":"  "}}"#, s).0
        #expect(without.properties.currency == "USD", "a blank value falls through to the constant")
    }

    @Test("per-event overrides change one event's fields only")
    func perEventOverrides() throws {
        var s = TransformSettings()
        var purchase = EventOverride()
        purchase.mapping[.value] = .paths([["revenue"]])
        purchase.customFields = [CustomField(object: .properties, key: "margin", source: .paths([["margin"]]))]
        s.eventOverrides["purchase"] = purchase
        s.customFields = [CustomField(object: .properties, key: "channel", source: .constant(.string("web")))]
        let json = #"{"event_name":"NAME","url":"https://s.example/","value":22.5,"revenue":16,"margin":"4.1"}"#
        let bought = try event(json.replacingOccurrences(of: "NAME", with: "purchase"), s).0
        #expect(bought.properties.value == 16 && bought.customProperties.map(\.key) == ["channel", "margin"])
        let carted = try event(json.replacingOccurrences(of: "NAME", with: "add_to_cart"), s).0
        #expect(carted.properties.value == 22.5 && carted.customProperties.map(\.key) == ["channel"])
    }

    @Test("the ViewContent choice: page_view, view_item or both", arguments: [
        (ViewContentChoice.pageView, ["page_view"]), (.viewItem, ["view_item", "view_content"]), (.both, ["page_view", "view_item", "view_content"]),
    ])
    func viewContent(choice: ViewContentChoice, sent: [String]) throws {
        var s = TransformSettings()
        s.viewContent = choice
        for name in ["page_view", "view_item", "view_content"] {
            let result = outcome(#"{"event_name":"\#(name)","url":"https://s.example/"}"#, s)
            if sent.contains(name) {
                guard case .event(let e, _) = result else { Issue.record("\(name): \(result)"); continue }
                #expect(e.event == "ViewContent")
            } else {
                guard case .skipped(let reason) = result else { Issue.record("\(name) should be skipped: \(result)"); continue }
                #expect(reason.contains("view_content"))
            }
        }
    }

    @Test("content_type gets the default only with contents or content ids")
    func contentTypeOnlyWithContents() throws {
        #expect(try event(#"{"event_name":"page_view","url":"https://s.example/"}"#, TransformSettings()).0.properties.contentType == nil)
        #expect(try event(#"{"event_name":"page_view","url":"https://s.example/","items":[{"id":"A"}]}"#, TransformSettings()).0.properties.contentType == "product")
    }
}
