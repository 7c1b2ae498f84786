import ForwarderCore
import Testing

@Suite("JSON parser and writer")
struct JSONTests {
    @Test("parses every kind of value and keeps number literals as written")
    func parsesValues() throws {
        let json = try JSONParser.parse(#" {"a": [1, -2.5e3, 9179124954957, true, false, null], "b": {"c": "d"}, "": 0} "#)
        #expect(json["a"] == .array([.number("1"), .number("-2.5e3"), .number("9179124954957"), .bool(true), .bool(false), .null]))
        #expect(json.value(at: ["b", "c"]) == .string("d"))
        #expect(json.value(at: ["a", "2"]) == .number("9179124954957"))
        #expect(json[""] == .number("0"))
    }

    @Test("decodes escapes, including surrogate pairs")
    func escapes() throws {
        let json = try JSONParser.parse(#"["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u20ac", "\ud83d\ude00", "é€😀"]"#)
        #expect(json == .array([.string("a\"b\\c/d\u{8}\u{c}\n\r\t"), .string("é€"), .string("😀"), .string("é€😀")]))
    }

    @Test("rejects what is not JSON, with an offset and no content", arguments: [
        "", "   ", "{", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "1.", "-", "1e", "tru", "nul", "\"abc", "\"\\x\"",
        "\"\\ud83d\"", "\"\\ude00\"", "{\"a\" 1}", "[1 2]", "1 2", "\"a\u{1}b\"", "NaN", "[Infinity]",
    ])
    func rejectsInvalid(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("nesting beyond the limit is an error, not a stack overflow")
    func depthLimit() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        _ = try JSONParser.parse(ok)
    }

    @Test("the writer escapes what JSON requires and round-trips")
    func writerRoundTrip() throws {
        let value = JSON.object(JSONObject(keys: ["q\"uote", "ctl"], values: [.string("back\\slash\n"), .array([.string("\u{1}\u{1f}é"), .number("1.5"), .null, .bool(true)])]))
        let text = JSONWriter.encode(value)
        #expect(text == #"{"q\"uote":"back\\slash\n","ctl":["\u0001\u001fé",1.5,null,true]}"#)
        #expect(try JSONParser.parse(text) == value)
    }

    @Test("escapes at every offset of long strings: the eight-bytes-at-a-time scan hands each one to the exact loop")
    func escapesAtEveryOffset() throws {
        let specials: [Character] = ["\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "€", "😀", "\u{7f}", " "]
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 31, 64] {
            for offset in 0...length {
                for special in specials {
                    var text = String(repeating: "a", count: length)
                    text.insert(special, at: text.index(text.startIndex, offsetBy: offset))
                    if offset % 2 == 1 { text += "\u{2}" }  // a second escape, after a plain run
                    var w = JSONWriter(capacity: 0)  // grows on the way, too
                    w.string(text)
                    let written = String(decoding: w.bytes, as: UTF8.self)
                    #expect(try JSONParser.parse(written) == .string(text), "\(length) \(offset)")
                    #expect(!written.utf8.dropFirst().dropLast().contains(where: { $0 < 0x20 }), "no raw control byte")
                    // The transform's own parser (the tape, which scans the same way) reads what
                    // the tree parser reads.
                    let document = JSONWriter.encode(.object(JSONObject(keys: ["event_name", "url", "id"],
                                                                         values: [.string("purchase"), .string("https://shop.example/" + text), .string(text)])))
                    let transformer = Transformer()
                    let tape = transformer.transform(payload: document, eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
                    let tree = transformer.transform(source: try JSONParser.parse(document), eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
                    #expect(tape == tree, "\(length) \(offset)")
                    guard case .event(let event, _) = tape else { Issue.record("not sent: \(tape)"); continue }
                    #expect(event.properties.orderID == (text.trimmingWhitespace().isEmpty ? nil : text.trimmingWhitespace()))
                }
            }
        }
    }

    @Test("a copied writer is a value: writing or growing one leaves the other as it was")
    func writerCopies() {
        var a = JSONWriter(capacity: 0)
        a.string("first")
        var b = a
        b.raw(UInt8(ascii: ","))
        b.string(String(repeating: "x", count: 10_000))  // grows b
        a.raw(UInt8(ascii: ";"))
        #expect(String(decoding: a.bytes, as: UTF8.self) == #""first";"#)
        #expect(b.count == 7 + 1 + 10_002)
        #expect(String(decoding: b.bytes.prefix(8), as: UTF8.self) == #""first","#)
        var c = b
        c.truncate(to: 0)
        c.reserveCapacity(64)
        c.raw("{}")
        #expect(String(decoding: c.bytes, as: UTF8.self) == "{}")
        #expect(b.count == 7 + 1 + 10_002, "truncating and writing a copy leaves the original")
        #expect(b.withBytes { $0[8] } == UInt8(ascii: "\""))
        #expect(String(decoding: b.bytes.prefix(2), as: UTF8.self) == #""f"#, "the copy wrote into a buffer of its own")
    }

    @Test("numbers print as integers when integral, shortest form otherwise")
    func numberFormatting() {
        var w = JSONWriter()
        for n in [16.0, 22.53, -0.5, 1e20, 9.99] { w.number(n); w.raw(UInt8(ascii: " ")) }
        #expect(String(decoding: w.bytes, as: UTF8.self) == "16 22.53 -0.5 1e+20 9.99 ")
    }
}

@Suite("JSON writer: integers")
struct JSONWriterIntegerTests {
    @Test("integers print as Swift prints them, at the limits too", arguments: [Int64(0), 7, -7, 10, 1_795_000_000, -1_000_000_007, .max, .min, .max - 1, .min + 1])
    func integers(value: Int64) {
        var w = JSONWriter(capacity: 0)
        w.integer(value)
        #expect(String(decoding: w.bytes, as: UTF8.self) == String(value))
    }
}
