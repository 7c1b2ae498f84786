@testable import ForwarderCore
import Foundation
import Testing
import TestSupport

/// `JSONParser.eventID` (validate, build only the id) must accept and reject exactly what
/// `JSONParser.parse` does, and find the same event id as `NDJSONLine.eventID`.
@Suite("JSON skim for event ids")
struct JSONSkimTests {
    static func full(_ bytes: [UInt8]) -> String {
        guard let json = try? JSONParser.parse(bytes) else { return "invalid" }
        guard case .object = json else { return "not an object" }
        return NDJSONLine.eventID(of: json).map { "id \($0)" } ?? "no id"
    }

    static func skim(_ bytes: [UInt8]) -> String {
        guard let found = try? bytes.withUnsafeBufferPointer({ buffer throws(JSONParseError) in try JSONParser.eventID(buffer) }) else { return "invalid" }
        guard found.isObject else { return "not an object" }
        return found.eventID.map { "id \($0)" } ?? "no id"
    }

    @Test("hand-picked cases agree", arguments: [
        #"{"event_id":"a"}"#, #"{"context":{"event_id":"c"}}"#, #"{"event_id":"","context":{"event_id":"c"}}"#,
        #"{"event_id":42}"#, #"{"event_id":"a","event_id":"b"}"#, #"{"x":[1,2,{"y":"\u00e9\ud83d\ude00"}],"event_id":"a"}"#,
        #"[1,2]"#, #""text""#, "12", "-0.5e+3", "01", "1.", "{", "{}", #"{"a":}"#, #"{"a":1,}"#, #"{"a":"\ud800"}"#,
        #"{"a":"\x"}"#, "{\"a\":\"\u{01}\"}", #"{"a":tru}"#, #"{"event_id":"a"} x"#, " \n{\"event_id\" : \"s\" } \r\n",
        String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        #"{"a":"# + String(repeating: "[", count: 255) + String(repeating: "]", count: 255) + #","event_id":"deep"}"#,
        #"{"a":"# + String(repeating: "[", count: 256) + String(repeating: "]", count: 256) + #","event_id":"deep"}"#,
    ])
    func cases(text: String) {
        #expect(Self.skim(Array(text.utf8)) == Self.full(Array(text.utf8)), "\(text.prefix(80))")
    }

    @Test("random mutations of real events agree (5,000 seeded cases)")
    func mutations() throws {
        var generator = OutputSafetyTests.Generator(state: 42)
        let sources = try ["purchase", "search", "page_view", "add_to_cart"].map {
            Array(try Repository.read("Tests/ForwarderCoreTests/Golden/\($0).source.json").utf8)
        }
        let alphabet = Array(#"{}[]",:\u0 1e-.tfn"abc9"#.utf8) + [0x01, 0xC3, 0xA9]
        var disagreements: [String] = []
        for _ in 0..<5_000 {
            var bytes = sources.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let i = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes.remove(at: i)
                case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: i)
                default: bytes[i] = alphabet.randomElement(using: &generator)!
                }
            }
            if Self.skim(bytes) != Self.full(bytes) { disagreements.append(String(decoding: bytes.prefix(120), as: UTF8.self)) }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(3))")
    }
}

@Suite("NDJSON lines")
struct NDJSONLineTests {
    @Test("LF and CRLF, blank and whitespace-only lines left out, numbers kept, last line with or without a newline",
          arguments: [
            ("a\nb\n", [1: "a", 2: "b"]), ("a\r\nb", [1: "a", 2: "b"]), ("\n\na\n \t\n\r\nb\r\n", [3: "a", 6: "b"]),
            ("", [:]), ("\n", [:]), ("only", [1: "only"]), (" x \n", [1: " x "]),
          ])
    func lines(text: String, expected: [Int: String]) {
        let found = NDJSONLine.lines(Array(text.utf8)).map { ($0.number, String(decoding: $0.bytes, as: UTF8.self)) }
        #expect(Dictionary(uniqueKeysWithValues: found) == expected)
        #expect(found.map(\.0) == found.map(\.0).sorted())
    }
}
