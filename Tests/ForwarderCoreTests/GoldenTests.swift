import ForwarderCore
import Foundation
import Testing
import TestSupport

/// Full input → output pairs in Tests/ForwarderCoreTests/Golden. A change to the output of
/// any of them is a change users will see at TikTok: review the diff, then regenerate with
/// `UPDATE_GOLDEN=1 swift test --filter GoldenTests`.
@Suite("Transform golden files")
struct GoldenTests {
    static let directory = Repository.root + "/Tests/ForwarderCoreTests/Golden/"
    static let now: Int64 = 1_795_000_000_000

    /// Each golden case and the settings it runs with: the defaults, or an event source (and
    /// for offline the calling code its national numbers need).
    static let cases: [(String, TransformSettings)] = {
        var app = TransformSettings()
        app.eventSource = .app
        var offline = TransformSettings()
        offline.eventSource = .offline
        offline.defaultPhoneCountryCode = "33"
        var crm = TransformSettings()
        crm.eventSource = .crm
        return [("purchase", TransformSettings()), ("search", TransformSettings()), ("page_view", TransformSettings()), ("add_to_cart", TransformSettings()),
                ("app_purchase", app), ("offline_purchase", offline), ("crm_lead", crm)]
    }()

    @Test("source → TikTok event", arguments: cases.map(\.0))
    func golden(name: String) throws {
        let settings = Self.cases.first { $0.0 == name }!.1
        let source = try String(contentsOfFile: Self.directory + name + ".source.json", encoding: .utf8)
        let outcome = Transformer(settings: settings).transform(payload: source, eventID: "golden-\(name)", insertedAtMillis: Self.now - 60_000, nowMillis: Self.now)
        guard case .event(let event, let warnings) = outcome else {
            Issue.record("\(name): expected an event, got \(outcome)")
            return
        }
        var document = JSONObject()
        if event.source != .web { document.append("event_source", .string(event.source.rawValue)) }
        document.append("event", try JSONParser.parse(event.encoded()))
        document.append("warnings", .array(warnings.map(JSON.string)))
        let expectedPath = Self.directory + name + ".tiktok.json"
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try (JSONWriter.encode(.object(document)) + "\n").write(toFile: expectedPath, atomically: true, encoding: .utf8)
        }
        let expected = try JSONParser.parse(try String(contentsOfFile: expectedPath, encoding: .utf8))
        #expect(JSON.object(document) == expected)
        // And TikTok (the sandbox's rules) would take it.
        let id = event.source == .web ? "CGOLDENPIXEL" : "7000000000000000001"
        #expect(TrackRequestValidator.firstProblem(in: try JSONParser.parse(TrackRequest.body(source: event.source, sourceID: id, testEventCode: nil,
                                                                                               events: [event.encoded()]))) == nil)
    }
}
