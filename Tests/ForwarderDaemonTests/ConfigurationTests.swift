import ForwarderCore
@testable import ForwarderDaemon
import Foundation
import Testing
import TestSupport

@Suite("Configuration: file, then environment, then flags")
struct ConfigurationTests {
    static func file(_ text: String, in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/config.yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the example file in the repository loads, and every key in it is known")
    func example() throws {
        var layers = ConfigLayers()
        try layers.loadFile(Repository.root + "/tiktok-forwarder.example.yaml")
        #expect(layers.scalar("delivery.max_in_flight")?.0 == "4")
        #expect(layers.scalar("pixel_code")?.0 == "CXXXXXXXXXXXXXXXXXXX")
        let delivery = try DeliverySettings.resolve(layers)
        #expect(delivery == DeliverySettings(), "the example documents the defaults")
        #expect(try ForwarderConfiguration.transformSettings(layers) == TransformSettings())
    }

    @Test("environment overrides the file, flags override the environment; tables merge by key")
    func precedence() throws {
        let directory = TemporaryDirectory()
        try "tok\n".write(toFile: directory.path + "/token", atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(try Self.file("""
            db: /from/file.sqlite
            pixel_code: FILEPIXEL
            access_token_file: \(directory.path)/token
            delivery:
              max_in_flight: 2
              linger: 20ms
              worker_priority: idle
            transform:
              events:
                signup: CompleteRegistration
                quote: Contact
            """, in: directory))
        try layers.loadEnvironment(["TIKTOK_FORWARDER_DB": "/from/env.sqlite", "TIKTOK_FORWARDER_DELIVERY_MAX_IN_FLIGHT": "6", "OTHER": "x",
                                    "TIKTOK_FORWARDER_LOG_LEVEL": "info", "TIKTOK_FORWARDER_CONFIG": "/also/fine.yaml"])
        layers.set("delivery.max_in_flight", "8", origin: "--max-in-flight")
        layers.set("transform.events", .table(["quote": "SubmitForm"]), origin: "--event")
        let config = try ForwarderConfiguration.resolve(layers, environment: [:])
        #expect(config.databasePath == "/from/env.sqlite")
        #expect(config.defaultDestination.pixelCode == "FILEPIXEL")
        #expect(config.delivery.maxInFlight == 8 && config.delivery.lingerMillis == 20)
        #expect(config.delivery.workerPriority == .idle && DeliverySettings().workerPriority == .low)
        #expect(config.transform.eventNames == ["signup": "CompleteRegistration", "quote": "SubmitForm"])
        #expect(config.endpoint == "https://business-api.tiktok.com")
        #expect(config.logLevel == "info")
    }

    @Test("a mistyped TIKTOK_FORWARDER_* variable is refused, naming the setting it was probably meant to be", arguments: [
        ("TIKTOK_FORWARDER_TEST_EVNT_CODE", "did you mean TIKTOK_FORWARDER_TEST_EVENT_CODE?"),
        ("TIKTOK_FORWARDER_DELIVERY_MAX_INFLIGHT", "did you mean TIKTOK_FORWARDER_DELIVERY_MAX_IN_FLIGHT?"),
        ("TIKTOK_FORWARDER_PIXELCODE", "did you mean TIKTOK_FORWARDER_PIXEL_CODE?"),
        ("TIKTOK_FORWARDER_SOMETHING_ELSE_ENTIRELY", "is not a setting;"),
    ])
    func unknownEnvironment(_ name: String, _ message: String) {
        var layers = ConfigLayers()
        do {
            try layers.loadEnvironment([name: "x"])
            Issue.record("\(name) was accepted")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test("the log level has its file, environment and flag forms, and a bad one is refused with where it came from")
    func logLevel() throws {
        var layers = ConfigLayers()
        layers.set("db", "/x.sqlite", origin: "--db")
        layers.set("pixel_code", "P", origin: "--pixel-code")
        layers.set("access_token_file", "/dev/null", origin: "--access-token-file")
        #expect(throws: (any Error).self) { try ForwarderConfiguration.resolve(layers, environment: [:]) }  // an empty token file
        let directory = TemporaryDirectory()
        try "t0ken\n".write(toFile: directory.path + "/token", atomically: true, encoding: .utf8)
        layers.set("access_token_file", directory.path + "/token", origin: "--access-token-file")
        #expect(try ForwarderConfiguration.resolve(layers, environment: [:]).logLevel == "notice")
        layers.set("log_level", "debug", origin: "TIKTOK_FORWARDER_LOG_LEVEL")
        #expect(try ForwarderConfiguration.resolve(layers, environment: [:]).logLevel == "debug")
        layers.set("log_level", "loud", origin: "config.yaml (log_level)")
        do {
            _ = try ForwarderConfiguration.resolve(layers, environment: [:])
            Issue.record("a bad level was accepted")
        } catch {
            #expect("\(error)".contains("config.yaml (log_level)") && "\(error)".contains("not a log level"))
        }
    }

    @Test("the token comes from $CREDENTIALS_DIRECTORY when no file is named")
    func credentials() throws {
        let directory = TemporaryDirectory()
        try "secret\n".write(toFile: directory.path + "/access-token", atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        layers.set("db", "/x.sqlite", origin: "--db")
        layers.set("pixel_code", "P", origin: "--pixel-code")
        let config = try ForwarderConfiguration.resolve(layers, environment: ["CREDENTIALS_DIRECTORY": directory.path])
        #expect(config.defaultDestination.accessTokenFile == directory.path + "/access-token")
        #expect(try AccessTokenFile.read(config.defaultDestination.accessTokenFile) == "secret")
    }

    @Test("mistakes are refused with the key and where it came from", arguments: [
        ("delivery:\n  max_in_fligth: 3\n", "unknown key 'delivery.max_in_fligth'"),
        ("delivery:\n  max_in_flight: lots\n", "(delivery.max_in_flight): 'lots' is not a whole number"),
        ("delivery:\n  linger: soon\n", "'soon' is not a duration"),
        ("delivery:\n  worker_priority: realtime\n", "(delivery.worker_priority): 'realtime' is not a worker priority: idle, low or normal"),
        ("delivery:\n  request_timeout: 10s\n  lease: 20s\n", "must be at least 3 request timeouts"),
        ("transform:\n  preset: modern\n", "'modern' is not a preset"),
        ("transform:\n  map:\n    user.mail: a.b\n", "'user.mail' is not a TikTok field"),
        ("endpoint: http://business-api.tiktok.com\n", "must use https"),
        ("endpoint: [1, 2]\n", "lists are not supported"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("db: [unclosed\n", "is not valid YAML"),
    ])
    func refusals(yaml: String, message: String) throws {
        let directory = TemporaryDirectory()
        try "tok".write(toFile: directory.path + "/token", atomically: true, encoding: .utf8)
        let error = #expect(throws: ConfigurationError.self) {
            var layers = ConfigLayers()
            try layers.loadFile(try Self.file(yaml, in: directory))
            layers.set("db", "/x.sqlite", origin: "--db")
            layers.set("pixel_code", "P", origin: "--pixel-code")
            layers.set("access_token_file", directory.path + "/token", origin: "--access-token-file")
            _ = try ForwarderConfiguration.resolve(layers, environment: [:])
        }
        #expect(error?.description.contains(message) == true, "\(error?.description ?? "no error")")
    }

    @Test("loopback may use plain http; other hosts must use https")
    func endpoints() throws {
        for ok in ["https://business-api.tiktok.com", "http://127.0.0.1:8080", "http://localhost:1", "https://proxy.internal/tiktok"] {
            #expect(throws: Never.self) { try ForwarderConfiguration.checkEndpoint(ok, origin: "test") }
        }
        for bad in ["http://business-api.tiktok.com", "ftp://127.0.0.1", "business-api.tiktok.com", "http://127.0.0.1.evil.example"] {
            #expect(throws: ConfigurationError.self) { try ForwarderConfiguration.checkEndpoint(bad, origin: "test") }
        }
    }
}

@Suite("Event names mapped to nothing, in the configuration")
struct EventNameConfigurationTests {
    @Test("false, null, ~ or an empty value skip an event name; a quoted blank name is refused with the key", arguments: [
        ("page_view: false", true), ("page_view: null", true), ("page_view: ~", true), ("page_view:", true), ("page_view: \"\"", false), ("page_view: \"  \"", false),
    ])
    func skipOrRefuse(_ line: String, _ accepted: Bool) throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/c.yaml"
        try "transform:\n  events:\n    \(line)\n    signup: CompleteRegistration\n".write(toFile: path, atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        do {
            try layers.loadFile(path)
            let settings = try ForwarderConfiguration.transformSettings(layers)
            #expect(accepted, "\(line) was accepted")
            #expect(settings.tiktokName(for: "page_view") == nil && settings.tiktokName(for: "signup") == "CompleteRegistration")
        } catch {
            #expect(!accepted, "\(line): \(error)")
            #expect("\(error)".contains("page_view") && "\(error)".contains("blank"))
        }
    }
}

@Suite("Custom properties in the configuration")
struct CustomPropertyConfigurationTests {
    @Test("transform.map and transform.set take custom user./properties. keys; transform.hash hashes user ones; a typo of a standard key is refused")
    func customFromYAML() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/c.yaml"
        try """
            transform:
              map:
                properties.brand_tier: [customer.tier, tier]
                user.loyalty_id: user.loyalty
                user.zip: customer.zip
              set:
                properties.channel: web-shop
              hash: user.loyalty_id
            """.write(toFile: path, atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(path)
        let settings = try ForwarderConfiguration.transformSettings(layers)
        #expect(settings.customFields.map { "\($0.object.rawValue).\($0.key)" }.sorted() == ["properties.brand_tier", "properties.channel", "user.loyalty_id", "user.zip"])
        #expect(settings.customFields.first { $0.key == "loyalty_id" }?.hashed == true)
        #expect(settings.customFields.first { $0.key == "brand_tier" }?.source == .paths([["customer", "tier"], ["tier"]]))

        for (yaml, message) in [("  map:\n    user.mail: contact.mail\n", "did you mean user.email?"),
                                ("  map:\n    properties.curency: cur\n", "did you mean properties.currency?"),
                                ("  hash: user.nothing\n", "'user.nothing' is not a custom property")] {
            try "transform:\n\(yaml)".write(toFile: path, atomically: true, encoding: .utf8)
            var bad = ConfigLayers()
            try bad.loadFile(path)
            do {
                _ = try ForwarderConfiguration.transformSettings(bad)
                Issue.record("accepted: \(yaml)")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}

@Suite("Destinations and event sources in the configuration")
struct DestinationConfigurationTests {
    static func resolve(_ yaml: String, files: [String: String] = [:], environment: [String: String] = [:]) throws -> ForwarderConfiguration {
        let directory = TemporaryDirectory()
        for (name, content) in files { try content.write(toFile: directory.path + "/" + name, atomically: true, encoding: .utf8) }
        let path = directory.path + "/c.yaml"
        try yaml.replacingOccurrences(of: "$DIR", with: directory.path).write(toFile: path, atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(path)
        return try ForwarderConfiguration.resolve(layers, environment: environment.mapValues { $0.replacingOccurrences(of: "$DIR", with: directory.path) })
    }

    static func refusal(_ yaml: String, files: [String: String] = ["t": "tok"]) -> String {
        do {
            _ = try resolve(yaml, files: files)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test("the example file still makes one web destination named default from the top-level keys")
    func example() throws {
        let directory = TemporaryDirectory()
        try "tok".write(toFile: directory.path + "/access-token", atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(Repository.root + "/tiktok-forwarder.example.yaml")
        let config = try ForwarderConfiguration.resolve(layers, environment: ["CREDENTIALS_DIRECTORY": directory.path])
        #expect(config.destinations.count == 1)
        let only = config.defaultDestination
        #expect(only.name == "default" && only.eventSource == .web && only.sourceIDs == [.web: "CXXXXXXXXXXXXXXXXXXX"])
        #expect(only.accessTokenFile == directory.path + "/access-token" && only.transform == TransformSettings())
    }

    @Test("destinations inherit the token file, test code and transform; each sets its source and id; the default comes first")
    func destinations() throws {
        let config = try Self.resolve("""
            db: /x.sqlite
            access_token_file: $DIR/shared
            test_event_code: TEST1
            transform:
              preset: current
              events:
                newsletter: Subscribe
            destinations:
              - name: brand-fr
                pixel_code: CFRPIXEL
              - name: app
                default: true
                event_source: app
                event_source_id: "7123456789"
                access_token_file: $DIR/app-token
                test_event_code: ~
                transform:
                  events:
                    login: Login
                    purchase:
                      name: Purchase
                      map: {properties.value: [revenue, total]}
                      set: {properties.value: 0, properties.channel: app}
              - name: stores
                event_source: offline
                event_source_id: "7000000000000000001"
              - name: both
                event_source: auto
                event_source_id: {web: CBOTH, app: "7999"}
            """, files: ["shared": "tok-a", "app-token": "tok-b"])
        #expect(config.destinations.map(\.name) == ["app", "brand-fr", "stores", "both"], "the default first")
        let app = config.defaultDestination
        #expect(app.eventSource == .app && app.sourceIDs == [.app: "7123456789"] && app.accessTokenFile.hasSuffix("/app-token"))
        #expect(app.testEventCode == "TEST1", "a null in the destination leaves the inherited value")
        #expect(app.transform.preset == .current && app.transform.eventNames == ["newsletter": "Subscribe", "login": "Login", "purchase": "Purchase"])
        let purchase = try #require(app.transform.eventOverrides["purchase"])
        #expect(purchase.mapping[.value] == FieldSource(paths: [["revenue"], ["total"]], constant: .number("0")))
        #expect(purchase.customFields.map(\.key) == ["channel"])
        let fr = config.destinations[1]
        #expect(fr.eventSource == .web && fr.pixelCode == "CFRPIXEL" && fr.accessTokenFile.hasSuffix("/shared") && fr.transform.eventOverrides.isEmpty)
        #expect(config.destinations[2].sourceIDs == [.offline: "7000000000000000001"])
        #expect(config.destinations[3].eventSource == .auto && config.destinations[3].sourceIDs == [.web: "CBOTH", .app: "7999"])
        #expect(config.destination(named: nil)?.name == "app" && config.destination(named: "stores") != nil && config.destination(named: "nope") == nil)
    }

    @Test("under systemd each destination reads the credential access-token-NAME, else access-token")
    func credentials() throws {
        let config = try Self.resolve("""
            db: /x.sqlite
            destinations:
              - name: a
                pixel_code: CA
              - name: b
                pixel_code: CB
            """, files: ["access-token-b": "tok-b", "access-token": "tok"], environment: ["CREDENTIALS_DIRECTORY": "$DIR"])
        #expect(config.destinations[0].accessTokenFile.hasSuffix("/access-token"))
        #expect(config.destinations[1].accessTokenFile.hasSuffix("/access-token-b"))
    }

    @Test("mistakes are refused with the key named", arguments: [
        ("db: /x\naccess_token_file: $DIR/t\npixel_code: CP\ndestinations:\n  - name: a\n    pixel_code: CA\n", "pixel_code is set at the top level and destinations: is given"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    pixel_code: CA\n  - name: a\n    pixel_code: CB\n", "two destinations are named 'a'"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    default: true\n    pixel_code: CA\n  - name: b\n    default: yes\n    pixel_code: CB\n", "'a' is already the default"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - pixel_code: CA\n", "a destination needs a name"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a b\n    pixel_code: CA\n", "is not a destination name"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    pixel_code: CA\n    delivery:\n      linger: 1s\n", "unknown section"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    pixel: CA\n", "unknown key 'pixel' in a destination"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n", "destination 'a': no pixel code"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    event_source: app\n", "destination 'a': event source app needs the TikTok App ID"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source: app\nevent_source_id: CPIXEL\n", "'CPIXEL' is not a TikTok App ID"),
        ("db: /x\naccess_token_file: $DIR/t\npixel_code: \"123456\"\n", "'123456' is not a pixel code"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source: offline\npixel_code: CP\n", "pixel_code is a web id, but the event source is offline"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source: auto\nevent_source_id: CP\n", "with event_source auto, give one id per source"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source: auto\nevent_source_id: {web: CP}\n", "event source auto needs the TikTok App ID"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source: tv\npixel_code: CP\n", "'tv' is not an event source"),
        ("db: /x\naccess_token_file: $DIR/t\nevent_source_id: {web: CP, tv: \"1\"}\n", "'tv' is not an event source"),
        ("db: /x\naccess_token_file: $DIR/t\ndestinations:\n  - name: a\n    pixel_code: CA\n    access_token_file: $DIR/missing\n", "destination 'a': cannot read the access token file"),
        ("db: /x\naccess_token_file: $DIR/t\npixel_code: CP\ntransform:\n  events:\n    purchase:\n      nmae: Purchase\n", "an event's entry takes name, map and set"),
        ("db: /x\naccess_token_file: $DIR/t\npixel_code: CP\ntransform:\n  events:\n    purchase:\n      map: {properties.valu: revenue}\n", "did you mean properties.value?"),
        ("db: /x\naccess_token_file: $DIR/t\npixel_code: CP\ntransform:\n  view_content: pages\n", "'pages' is not page_view, view_item or both"),
    ])
    func mistakes(yaml: String, message: String) {
        let error = Self.refusal(yaml)
        #expect(error.contains(message), "\(error)")
    }
}

@Suite("docs/events.md configuration examples")
struct EventsDocExamplesTests {
    @Test("the destinations example resolves as the page says")
    func destinationsExample() throws {
        let directory = TemporaryDirectory()
        for name in ["access-token", "access-token-de"] { try "tok".write(toFile: directory.path + "/" + name, atomically: true, encoding: .utf8) }
        let yaml = try Readme.snippet("destinations-yaml", in: "docs/events.md").replacingOccurrences(of: "/etc/tiktok-forwarder", with: directory.path)
        let path = directory.path + "/c.yaml"
        try ("db: /x.sqlite\n" + yaml).write(toFile: path, atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(path)
        let config = try ForwarderConfiguration.resolve(layers, environment: [:])
        #expect(config.destinations.map(\.name) == ["shop-fr", "shop-de", "app", "web-and-app"])
        #expect(config.destinations.map(\.eventSource) == [.web, .web, .app, .auto])
        #expect(config.destinations[1].accessTokenFile.hasSuffix("access-token-de") && config.destinations[1].testEventCode == "TEST123")
        #expect(config.destinations.allSatisfy { $0.transform.preset == .current })
        #expect(config.destinations[2].transform.eventOverrides["purchase"]?.mapping[.value] == .paths([["revenue"]]))
    }

    @Test("the per-event override example: purchase takes revenue and a margin; page_view is never sent")
    func overridesExample() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/c.yaml"
        try Readme.snippet("event-overrides-yaml", in: "docs/events.md").write(toFile: path, atomically: true, encoding: .utf8)
        var layers = ConfigLayers()
        try layers.loadFile(path)
        let settings = try ForwarderConfiguration.transformSettings(layers)
        let transformer = Transformer(settings: settings)
        let json = #"{"event_name":"purchase","url":"https://s.example/","value":10,"revenue":8,"order":{"margin":2}}"#
        guard case .event(let event, _) = transformer.transform(payload: json, eventID: "e", insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000) else {
            Issue.record("purchase was not sent")
            return
        }
        #expect(event.event == "Purchase" && event.properties.value == 8 && event.customProperties == [TikTokEvent.Custom(key: "margin", value: .number("2"))])
        guard case .skipped = transformer.transform(payload: #"{"event_name":"page_view","url":"https://s.example/"}"#, eventID: "p",
                                                    insertedAtMillis: 1_795_000_000_000, nowMillis: 1_795_000_000_000) else {
            Issue.record("page_view was sent")
            return
        }
    }
}
