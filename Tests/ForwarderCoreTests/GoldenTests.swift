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

    @Test("source → TikTok event", arguments: ["purchase", "search", "page_view", "add_to_cart"])
    func golden(name: String) throws {
        let source = try String(contentsOfFile: Self.directory + name + ".source.json", encoding: .utf8)
        let outcome = Transformer().transform(payload: source, eventID: "golden-\(name)", insertedAtMillis: Self.now - 60_000, nowMillis: Self.now)
        guard case .event(let event, let warnings) = outcome else {
            Issue.record("\(name): expected an event, got \(outcome)")
            return
        }
        var document = JSONObject()
        document.append("event", try JSONParser.parse(event.encoded()))
        document.append("warnings", .array(warnings.map(JSON.string)))
        let expectedPath = Self.directory + name + ".tiktok.json"
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try (JSONWriter.encode(.object(document)) + "\n").write(toFile: expectedPath, atomically: true, encoding: .utf8)
        }
        let expected = try JSONParser.parse(try String(contentsOfFile: expectedPath, encoding: .utf8))
        #expect(JSON.object(document) == expected)
    }
}
