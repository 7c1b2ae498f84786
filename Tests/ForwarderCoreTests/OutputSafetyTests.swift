import ForwarderCore
import Testing

/// Whatever the input, the output has no empty string, no null, and no clear-text email or phone.
@Suite("Transform output safety")
struct OutputSafetyTests {
    /// A small deterministic generator (SplitMix64), so a failure reproduces.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let emails = [#""john.doe@example.com""#, #"" Mixed.Case@Example.ORG ""#, #"["a@b.example","",null," a@b.example"]"#, #""""#, #""   ""#, "null", "42", #""no-at-sign""#]
    static let phones = [#""+33 6 12 34 56 78""#, #""0033612345678""#, #""06 12 34 56 78""#, #"["+447911123456",""]"#, #""""#, "null", #""+1 (415) 555-2671""#, "33612345678"]
    static let fillers = [#""""#, #""  ""#, "null", "[]", "{}", #""x""#, "0", "1.5", "true", #""€ ünïcødé""#]

    @Test("3,000 randomised events: no empty string, no null, no clear-text email or phone")
    func randomised() throws {
        var rng = Generator(state: 42)
        var settings = TransformSettings()
        settings.defaultPhoneCountryCode = "33"
        settings.forwardUnmapped = true
        settings.defaultPageURL = "https://default.example/"
        let transformer = Transformer(settings: settings)
        var events = 0
        for i in 0..<3_000 {
            func any(_ list: [String]) -> String { list.randomElement(using: &rng)! }
            let payload = """
                {"event_name":\(any([#""purchase""#, #""search""#, #""custom_thing""#, #""add_to_cart""#])),
                 "user":{"email":\(any(Self.emails)),"phone":\(any(Self.phones)),"id":\(any(Self.fillers))},
                 "properties":{"user":{"email":\(any(Self.emails))}},
                 "url":\(any([#""https://s.example/?ttclid=abc""#] + Self.fillers)),"referrer":\(any(Self.fillers)),
                 "currency":\(any(Self.fillers + [#""eur""#])),"value":\(any(Self.fillers + [#""12.5""#])),
                 "search_term":\(any(Self.fillers)),"status":\(any(Self.fillers)),"id":\(any(Self.fillers)),
                 "items":\(any([#"[{"id":"","quantity":"","price":null,"product":{"name":"  ","brand":""}}]"#, "[]", #"[{"id":7}]"#, "null"])),
                 "context":{"device":{"ip":\(any(Self.fillers + [#""1.2.3.4""#])),"cookie":\(any([#""_ttp=; ttclid=""#, #""_ttp=%20""#] + Self.fillers))}},
                 "partners":{"tiktok":{"ttp":\(any(Self.fillers)),"ldu":\(any(Self.fillers))}}}
                """
            let outcome = transformer.transform(payload: payload, eventID: "e\(i)", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
            // The daemon's path reads the payload's bytes in place (JSONTape); the tree of the
            // whole document (what `transform` and tests build) must give the same outcome.
            let tree = transformer.transform(source: try JSONParser.parse(payload), eventID: "e\(i)", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
            #expect(outcome == tree, "tape and tree differ for \(payload)")
            guard case .event(let event, _) = outcome else { continue }
            events += 1
            let output = String(decoding: event.encoded(), as: UTF8.self)
            #expect(!output.contains("\"\""), "empty string in \(output)")
            #expect(!output.contains("null"), "null in \(output)")
            #expect(!output.contains("@"), "clear-text email in \(output)")
            #expect(!output.contains("+33") && !output.contains("612345678") && !output.contains("555-2671") && !output.contains("7911123456"),
                    "clear-text phone in \(output)")
            _ = try JSONParser.parse(output)  // and it is valid JSON
        }
        #expect(events > 2_000)
    }

    @Test("the in-place reader and the tree agree on escapes, nesting, arrays and duplicate keys", arguments: [
        #"{"event_name":"purchase","url":"https:\/\/s.example\/p?ttclid=A\u0042C","user":{"email":"J\u00f6@Example.com"}}"#,
        #"{"event_name":"purc\u0068ase","url":"https://s.example/","items":[{"id":1},{"id":"2","product":{"name":"T\"ee"}},[],null]}"#,
        #"{"event_name":"purchase","url":"https://s.example/","us\u0065r":{"phone":"+33612345678"},"user":{"email":"a@b.example"}}"#,
        #"{"event_name":"search","event_name":"purchase","page":{"location":[{"href":"x"}]},"url":"https://s.example/"}"#,
        #"{"event_name":"purchase","url":"https://s.example/","context":{"event_timestamp":1.7950E12,"device":{"cookie":"_ttp=a%20b; ttclid=z"}}}"#,
        #"  {"event_name" : "purchase" , "url" : "https://s.example/" , "value" : -0.5e1 }  "#,
        // An escaped member name, an empty one, and names that share length, first and last
        // byte but differ inside.
        #"{"\u0065vent_name":"purchase","url":"https://s.example/","user":{"email":"a@b.example"}}"#,
        #"{"":1,"event_name":"purchase","url":"https://s.example/","properties":{"":{"id":"x"},"id":"O-1"}}"#,
        #"{"event_name":"purchase","uxxr":{"email":"x@y.example"},"url":"https://s.example/","usxr":1,"user":{"email":"a@b.example"}}"#,
        #"["event_name"]"#, #""purchase""#, #"{"event_name":"purchase","#, #"{"event_name":"purchase"}x"#, "",
    ])
    func tapeMatchesTree(payload: String) throws {
        try expectTapeMatchesTree(payload, Transformer())
    }

    /// The located paths (one walk over the payload for every path a plan reads) against the
    /// tree's own lookups: configured paths through arrays (digits, `01`, `+1`), into
    /// duplicated and escaped names, paths that are prefixes of others, and a per-event plan.
    @Test("configured paths read the same through the path index as through the tree", arguments: [
        #"{"event_name":"purchase","url":"https://s.example/","list":[{"v":"a"},{"v":"b"}],"m":{"k":{"deep":"d"}},"user":{"email":"a@b.example"}}"#,
        #"{"event_name":"purchase","url":"https://s.example/","list":["x",{"v":"second"}],"m":{"k":"flat"},"m":{"k":{"deep":"later"}}}"#,
        #"{"event_name":"sign_up","url":"https://s.example/","acct":{"email":" S@B.example "},"list":[[],{"v":7}],"m\u0000":1,"\u006d":{"k":{"deep":true}}}"#,
        #"{"event_name":"sign_up","url":"https://s.example/","acct":[],"list":{"1":{"v":"object, not array"}},"m":null}"#,
        #"{"event_name":"purchase","page":{"location":{"href":"https://s.example/h"}},"list":[{"v":""},{"v":" "}],"m":{"k":{}}}"#,
    ])
    func locatedPathsMatchTree(payload: String) throws {
        var settings = TransformSettings()
        settings.customFields = [
            CustomField(object: .properties, key: "second", source: .paths([["list", "1", "v"], ["list", "01", "v"]])),
            CustomField(object: .properties, key: "plus_one", source: .paths([["list", "+1", "v"]])),
            CustomField(object: .properties, key: "deep", source: .paths([["m", "k", "deep"], ["m", "k"], ["m"]])),
            CustomField(object: .user, key: "hashed_first", source: .paths([["list", "0", "v"]]), hashed: true),
        ]
        settings.mapping[.orderID] = .paths([["m", "k"], ["list", "0", "v"]])
        var signup = EventOverride()
        signup.mapping[.userEmail] = .paths([["acct", "email"], ["acct", "0"]])
        signup.customFields = [CustomField(object: .properties, key: "deep", source: .paths([["m", "k", "deep"]]))]
        settings.eventOverrides["sign_up"] = signup
        let outcome = try expectTapeMatchesTree(payload, Transformer(settings: settings))
        guard case .event = outcome else { Issue.record("not an event, so nothing compared: \(outcome)"); return }
    }

    @discardableResult
    private func expectTapeMatchesTree(_ payload: String, _ transformer: Transformer, sourceLocation: SourceLocation = #_sourceLocation) throws -> TransformOutcome {
        let tape = transformer.transform(payload: payload, eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
        let tree: TransformOutcome
        do {
            tree = transformer.transform(source: try JSONParser.parse(payload), eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000)
        } catch {
            tree = .rejected(reason: "payload is not JSON (\(error.description))")
        }
        #expect(tape == tree, sourceLocation: sourceLocation)
        return tape
    }
}
