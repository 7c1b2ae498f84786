@testable import ForwarderCore
import Testing

/// `Normalise.number` reads plain decimals without `strtod` (digits / 10^k); it must give
/// the very Double `Double(_:)` gives, and leave everything else to it.
@Suite("Numbers: the plain-decimal fast path")
struct NumberTests {
    @Test("random plain decimals of up to 15 digits: the same Double as Double(_:), bit for bit")
    func sameAsStrtod() {
        var rng = OutputSafetyTests.Generator(state: 7)
        var checked = 0
        for _ in 0..<200_000 {
            let digits = Int.random(in: 1...15, using: &rng)
            var text = String(UInt64.random(in: 0..<UInt64(pow10(digits)), using: &rng))
            text = String(repeating: "0", count: Int.random(in: 0...1, using: &rng) * (digits - text.count)) + text
            let point = Int.random(in: 0...text.count, using: &rng)
            if point > 0, point < text.count { text.insert(".", at: text.index(text.startIndex, offsetBy: point)) }
            if Bool.random(using: &rng) { text = "-" + text }
            guard let fast = Normalise.plainDecimal(text) else { Issue.record("not taken: \(text)"); continue }
            #expect(fast.bitPattern == Double(text)!.bitPattern, "\(text)")
            checked += 1
        }
        #expect(checked == 200_000)
    }

    @Test("what the fast path leaves to Double(_:)", arguments: [
        "", "-", ".", "1.", ".5", "-.5", "+1", "1e3", "1E-2", "--1", "1-", "1.2.3", "1234567890123456", "0.1234567890123456", " 1", "0x10",
    ])
    func fallsBack(_ text: String) {
        #expect(Normalise.plainDecimal(text) == nil)
    }

    @Test("and what number() makes of them, as before", arguments: [
        ("12.5", 12.5), ("-0", -0.0), ("007", 7), ("1.", 1), (".5", 0.5), ("1e3", 1000), ("1234567890123456", 1234567890123456), (" 22.53 ", 22.53),
    ])
    func number(_ text: String, _ expected: Double) {
        #expect(Normalise.number(.string(text))?.bitPattern == expected.bitPattern)
        #expect(Normalise.number(.number(text.trimmingWhitespace()))?.bitPattern == expected.bitPattern)
    }

    @Test("the writer's decimals without description: what description prints, for random values")
    func writtenAsDescription() {
        var rng = OutputSafetyTests.Generator(state: 11)
        func written(_ value: Double) -> String {
            var writer = JSONWriter(capacity: 8)
            writer.number(value)
            return String(decoding: writer.bytes, as: UTF8.self)
        }
        func expected(_ value: Double) -> String {
            value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : value.description
        }
        for _ in 0..<200_000 {
            // Plain decimals (what prices are), then arbitrary doubles around them.
            let digits = Int.random(in: 1...17, using: &rng)
            var value = Double(UInt64.random(in: 0..<UInt64(pow10(digits)), using: &rng)) / pow10(Int.random(in: 0...18, using: &rng))
            if Bool.random(using: &rng) { value = -value }
            #expect(written(value) == expected(value), "\(value)")
            let nearby = Double(bitPattern: value.bitPattern &+ UInt64.random(in: 0...3, using: &rng))
            if nearby.isFinite { #expect(written(nearby) == expected(nearby), "\(nearby)") }
        }
        for value in [0.001, 0.0009999999999999998, 999999999999999.9, 1e15 - 0.5, 0.1 + 0.2, 1.0 / 3, 76.63, -0.0025, 1e-7, 123456.000001] {
            #expect(written(value) == expected(value), "\(value)")
        }
    }

    private func pow10(_ n: Int) -> Double { (0..<n).reduce(1) { value, _ in value * 10 } }
}

/// Email and external id values in ASCII are trimmed, checked, lowercased and hashed on their
/// bytes; the digests must be those of the String rules (`Normalise.text`, the 64-hex check,
/// `Normalise.email`, `lowercased()`).
@Suite("Hashed fields: the ASCII fast path")
struct ASCIIHashTests {
    static func expected(_ value: String, email: Bool, lowercaseID: Bool = true) -> [String] {
        guard let text = Normalise.text(.string(value)) else { return [] }
        if text.isSHA256Hex { return [text.lowercased()] }
        let normalised = email ? Normalise.email(text) : (lowercaseID ? text.lowercased() : text)
        return normalised.map { [SHA256Hasher().hexDigest($0)] } ?? []
    }

    @Test("random ASCII values, and a few that are not: the String rules' digests", arguments: [true, false])
    func sameDigests(lowercaseID: Bool) throws {
        var settings = TransformSettings()
        settings.lowercaseExternalID = lowercaseID
        let transformer = Transformer(settings: settings)
        var rng = OutputSafetyTests.Generator(state: 11)
        let alphabet = Array(" \t\n\u{0B}\u{0C}\r@.-_+aZqQ09fF") + ["é", "\u{00A0}", "\u{2003}"]
        let hex = String(repeating: "aB3", count: 21) + "f"  // 64 hex characters, mixed case
        var values = [hex, " \(hex)\t", hex + "0", "   ", "", "@", "A@B", " Mixed.Case@Example.ORG ", "no-at-sign", "\u{00A0}x@y.example\u{00A0}"]
        for _ in 0..<2_000 {
            values.append(String((0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }))
        }
        for value in values {
            let json = String(decoding: JSONWriter.encode(.string(value)).utf8, as: UTF8.self)
            let payload = #"{"event_name":"purchase","url":"https://s.example/","user":{"email":\#(json),"id":\#(json)}}"#
            guard case .event(let event, _) = transformer.transform(payload: payload, eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000) else {
                Issue.record("not an event: \(json)"); continue
            }
            #expect(event.user.emails == Self.expected(value, email: true), "email \(json)")
            #expect(event.user.externalIDs == Self.expected(value, email: false, lowercaseID: lowercaseID), "external id \(json)")
        }
    }
}

/// Cookie headers and query strings are scanned eight bytes at a time; the answer must be
/// the byte-by-byte rule's (leading separators, spaces and tabs skipped, trailing spaces of a
/// name ignored, values trimmed of spaces and tabs, the first non-empty value, `end` stops).
@Suite("Name-value pairs: the word-at-a-time scan")
struct PairValueTests {
    static func reference(_ name: String, _ text: String, separator: UInt8, end: UInt8?) -> String? {
        let buffer = Array(text.utf8), key = Array(name.utf8)
        var i = 0
        let n = buffer.count
        while i < n {
            if let end, buffer[i] == end { return nil }
            while i < n, buffer[i] == separator || buffer[i] == 0x20 || buffer[i] == 0x09 { i += 1 }
            let nameStart = i
            while i < n, buffer[i] != UInt8(ascii: "="), buffer[i] != separator, buffer[i] != end { i += 1 }
            var nameEnd = i
            while nameEnd > nameStart, buffer[nameEnd - 1] == 0x20 { nameEnd -= 1 }
            guard i < n, buffer[i] == UInt8(ascii: "=") else { continue }
            i += 1
            var valueStart = i
            while i < n, buffer[i] != separator, buffer[i] != end { i += 1 }
            var valueEnd = i
            guard Array(buffer[nameStart..<nameEnd]) == key else { continue }
            while valueStart < valueEnd, buffer[valueStart] == 0x20 || buffer[valueStart] == 0x09 { valueStart += 1 }
            while valueEnd > valueStart, buffer[valueEnd - 1] == 0x20 || buffer[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            guard valueEnd > valueStart else { continue }
            let value = PercentDecoding.decode(String(decoding: buffer[valueStart..<valueEnd], as: UTF8.self)).trimmingWhitespace()
            if !value.isEmpty { return value }
        }
        return nil
    }

    @Test("random headers and queries: the byte-by-byte rule's answer")
    func sameAsReference() {
        var rng = OutputSafetyTests.Generator(state: 5)
        let alphabet = Array("ab=;&# \t%2x_".utf8)
        for _ in 0..<100_000 {
            let length = Int.random(in: 0...40, using: &rng)
            let text = String(decoding: (0..<length).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self)
            let name = ["a", "ab", "b", "_a", "a b"].randomElement(using: &rng)!
            for (separator, end) in [(UInt8(ascii: ";"), UInt8?.none), (UInt8(ascii: "&"), UInt8(ascii: "#"))] {
                #expect(Bytes.pairValue(named: name, in: text, separator: separator, end: end) == Self.reference(name, text, separator: separator, end: end),
                        "\(name) in \(text.debugDescription)")
            }
        }
    }
}
