import ForwarderCore
import ForwarderStore
import Foundation
import Yams

/// One configuration value as written in the file, the environment or a flag.
public enum ConfigValue: Sendable, Equatable {
    case scalar(String)
    /// A table such as `transform.events` (source name → TikTok name).
    case table([String: String])
}

/// Configuration keys and where each value came from. Layers merge in order (file, then
/// environment, then flags): a later scalar replaces an earlier one, tables merge by key.
public struct ConfigLayers: Sendable {
    public private(set) var values: [String: (value: ConfigValue, origin: String)] = [:]
    /// The `destinations:` list of the file, each entry's own keys (see ``Destination``).
    public private(set) var destinations: [(layers: ConfigLayers, origin: String)] = []

    public init() {}

    public mutating func set(_ key: String, _ value: ConfigValue, origin: String) {
        if case .table(let new) = value, case .table(var old)? = values[key]?.value {
            old.merge(new) { _, newer in newer }
            values[key] = (.table(old), origin)
        } else {
            values[key] = (value, origin)
        }
    }

    public mutating func set(_ key: String, _ text: String?, origin: String) {
        if let text { set(key, .scalar(text), origin: origin) }
    }

    public func scalar(_ key: String) -> (String, origin: String)? {
        guard case .scalar(let text)? = values[key]?.value else { return nil }
        return (text, values[key]!.origin)
    }

    public func table(_ key: String) -> ([String: String], origin: String)? {
        guard case .table(let table)? = values[key]?.value else { return nil }
        return (table, values[key]!.origin)
    }

    /// Reads a YAML configuration file (see `tiktok-forwarder.example.yaml`). Unknown keys are
    /// refused, so a typo does not silently leave a default in place.
    public mutating func loadFile(_ path: String) throws {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("cannot read the configuration file \(path): \((error as NSError).localizedDescription)")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError("\(path) is not valid YAML: \(Self.describe(yamlError: error))")
        }
        guard let node else { return }
        guard let mapping = node.mapping else { throw ConfigurationError("\(path): the top level must be a mapping of keys to values") }
        try flatten(mapping, prefix: "", file: path)
    }

    /// A YAML error by its position and problem only. Yams' own description quotes the
    /// offending line, which may hold a secret pasted into the wrong file: never show it.
    static func describe(yamlError error: Error) -> String {
        guard let yaml = error as? YamlError else { return "it could not be parsed" }
        func at(_ mark: Mark) -> String { "line \(mark.line), column \(mark.column)" }
        switch yaml {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return "\(problem) at \(at(mark))"
        case .reader(let problem, let offset, _, _):
            return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
        case .duplicatedKeysInMapping(_, let context):
            return "a key appears twice in one mapping at \(at(context.mark))"
        case .dataCouldNotBeDecoded:
            return "it is not UTF-8 text"
        default:
            return "it could not be parsed"
        }
    }

    /// The keys one level of the file may hold: the top level, or one entry of `destinations:`.
    struct Scope {
        var scalars: Set<String>
        var sections: Set<String>
        var tables: Set<String>
        var name: String

        static let topLevel = Scope(scalars: Set(ConfigKeys.scalars), sections: ConfigKeys.sections, tables: ConfigKeys.tables,
                                    name: "see tiktok-forwarder.example.yaml for the list")
        static let destination = Scope(scalars: ConfigKeys.destinationScalars, sections: ["transform"], tables: ConfigKeys.destinationTables,
                                       name: "a destination takes: \(ConfigKeys.destinationScalars.filter { !$0.hasPrefix("transform.") }.sorted().joined(separator: ", ")) and transform")
    }

    private mutating func flatten(_ mapping: Node.Mapping, prefix: String, file: String, scope: Scope = .topLevel, place: String = "") throws {
        for (keyNode, valueNode) in mapping {
            guard let name = keyNode.string else { throw ConfigurationError("\(file): a key is not a string") }
            let key = prefix + name
            let origin = "\(file) (\(place)\(key))"
            if key == "destinations", scope.name == Scope.topLevel.name {
                if valueNode.scalar.map({ $0.string.isEmpty || $0.string == "null" || $0.string == "~" }) == true { continue }
                guard let list = valueNode.sequence else { throw ConfigurationError("\(origin): must be a list of destinations (- name: …)") }
                for (index, entry) in list.enumerated() {
                    guard let entryMapping = entry.mapping else { throw ConfigurationError("\(origin) entry \(index + 1): must be a mapping (name, event_source, event_source_id, …)") }
                    var layers = ConfigLayers()
                    try layers.flatten(entryMapping, prefix: "", file: file, scope: .destination, place: "destinations.\(index + 1).")
                    destinations.append((layers, "\(file) (destinations.\(index + 1))"))
                }
            } else if scope.tables.contains(key) {
                if valueNode.scalar.map({ $0.string.isEmpty || $0.string == "null" || $0.string == "~" }) == true { continue }  // left empty
                if key == "event_source_id", let scalar = valueNode.scalar {
                    set(key, .scalar(scalar.string), origin: origin)  // one id, or a mapping of source → id
                    continue
                }
                guard let table = valueNode.mapping else { throw ConfigurationError("\(origin): must be a mapping") }
                var entries: [String: String] = [:]
                for (k, v) in table {
                    if key == "transform.events", let k = k.string, let override = v.mapping {
                        // purchase: {name: Purchase, map: {…}, set: {…}} — this event's own mapping.
                        for (field, value) in override {
                            switch field.string {
                            case "name":
                                guard let scalar = value.scalar else { throw ConfigurationError("\(origin) (\(k).name): must be text") }
                                entries[k] = try Self.eventName(scalar, origin: "\(origin) (\(k).name)")
                            case "map", "set":
                                let part = field.string!
                                guard let fields = value.mapping else { throw ConfigurationError("\(origin) (\(k).\(part)): must be a mapping of TikTok field to \(part == "map" ? "source paths" : "a constant")") }
                                var table: [String: String] = [:]
                                for (target, source) in fields {
                                    guard let target = target.string else { throw ConfigurationError("\(origin) (\(k).\(part)): keys must be text") }
                                    table[target] = try Self.entryText(source, key: "transform.\(part)", origin: "\(origin) (\(k).\(part).\(target))")
                                }
                                set("transform.events.\(k).\(part)", .table(table), origin: "\(origin) (\(k).\(part))")
                            default:
                                throw ConfigurationError("\(origin) (\(k)): an event's entry takes name, map and set")
                            }
                        }
                        continue
                    }
                    guard let k = k.string else { throw ConfigurationError("\(origin): entries must be text") }
                    if key == "transform.events" {
                        guard let scalar = v.scalar else { throw ConfigurationError("\(origin) (\(k)): a TikTok event name, false, or a mapping with name/map/set") }
                        entries[k] = try Self.eventName(scalar, origin: "\(origin) (\(k))")
                        continue
                    }
                    entries[k] = try Self.entryText(v, key: key, origin: "\(origin) (\(k))")
                }
                set(key, .table(entries), origin: origin)
            } else if let nested = valueNode.mapping {
                guard scope.sections.contains(key) else { throw ConfigurationError("\(origin): unknown section; known: \(scope.sections.sorted().joined(separator: ", "))") }
                try flatten(nested, prefix: key + ".", file: file, scope: scope, place: place)
            } else if let scalar = valueNode.scalar {
                guard scope.scalars.contains(key) else {
                    throw ConfigurationError("\(origin): unknown key '\(key)'\(scope.name == Scope.topLevel.name ? "" : " in a destination"); \(scope.name)")
                }
                // An empty value or `null` in the file means "use the default".
                if scalar.string.isEmpty || (scalar.style == .plain && ["null", "~"].contains(scalar.string)) { continue }
                set(key, .scalar(scalar.string), origin: origin)
            } else {
                throw ConfigurationError("\(origin): lists are not supported here")
            }
        }
    }

    /// A `transform.events` name: `false`, `null`, `~` or nothing (plain) mean "do not send
    /// these events"; a quoted blank name is a mistake, refused.
    private static func eventName(_ scalar: Node.Scalar, origin: String) throws -> String {
        if scalar.style == .plain, ["", "~", "null", "false"].contains(scalar.string.lowercased()) { return TransformSettings.doNotSend }
        if scalar.string.trimmingWhitespace().isEmpty {
            throw ConfigurationError("\(origin): a blank TikTok event name; write false (or null) to skip these events")
        }
        return scalar.string
    }

    /// One table entry as text; for `transform.map`, source paths as a YAML list or one
    /// comma-separated string.
    private static func entryText(_ node: Node, key: String, origin: String) throws -> String {
        if key == "transform.map", let list = node.sequence {
            let paths = list.compactMap { $0.scalar?.string }
            guard paths.count == list.count, !paths.isEmpty else { throw ConfigurationError("\(origin): a list of source paths must hold only paths") }
            return paths.joined(separator: ",")
        }
        guard let scalar = node.scalar else { throw ConfigurationError("\(origin): entries must be text") }
        return scalar.string
    }

    /// The keys a destination inherits from the top level: the token, test code, partner
    /// name and the transform (never the source id: each destination names its own).
    func inheritable() -> ConfigLayers {
        var copy = ConfigLayers()
        for (key, entry) in values where ConfigKeys.inherited.contains(key) || key.hasPrefix("transform.") {
            copy.values[key] = entry
        }
        return copy
    }

    /// These layers with `other`'s on top (scalars replaced, tables merged by key).
    func overlaid(with other: ConfigLayers) -> ConfigLayers {
        var copy = self
        for (key, entry) in other.values.sorted(by: { $0.key < $1.key }) { copy.set(key, entry.value, origin: entry.origin) }
        return copy
    }

    /// Applies the `TIKTOK_FORWARDER_*` variables: every scalar key, its dots as underscores,
    /// upper-cased (`delivery.max_in_flight` → `TIKTOK_FORWARDER_DELIVERY_MAX_IN_FLIGHT`).
    /// Any other `TIKTOK_FORWARDER_*` variable is refused, like an unknown YAML key: a
    /// mistyped `…TEST_EVENT_CODE` must not silently send test traffic to production.
    public mutating func loadEnvironment(_ environment: [String: String]) throws {
        for name in environment.keys.sorted() where name.hasPrefix("TIKTOK_FORWARDER_") && !ConfigKeys.otherEnvironment.contains(name) {
            guard ConfigKeys.byEnvironmentName[name] != nil else {
                let hint = ConfigKeys.closestEnvironmentName(to: name).map { " (did you mean \($0)?)" } ?? ""
                throw ConfigurationError("\(SafeText.escapingControls(name)) is not a setting\(hint); the variables are the keys of tiktok-forwarder.example.yaml as TIKTOK_FORWARDER_KEY (dots as underscores)")
            }
        }
        for key in ConfigKeys.scalars {
            let name = ConfigKeys.environmentName(key)
            if let value = environment[name], !value.isEmpty { set(key, .scalar(value), origin: name) }
        }
    }
}

/// The stable names of the configuration.
public enum ConfigKeys {
    public static let sections: Set<String> = ["delivery", "transform"]
    public static let tables: Set<String> = ["transform.events", "transform.map", "transform.set", "event_source_id"]
    public static let transformScalars: [String] = [
        "transform.preset", "transform.forward_unmapped", "transform.default_phone_country", "transform.keep_external_id_case",
        "transform.content_type", "transform.max_age", "transform.default_page_url", "transform.hash", "transform.view_content",
    ]
    /// What an entry of `destinations:` may set.
    public static let destinationScalars: Set<String> = Set(["name", "default", "event_source", "event_source_id", "pixel_code",
                                                             "access_token_file", "test_event_code", "partner_name"] + transformScalars)
    static let destinationTables: Set<String> = tables
    /// Top-level keys every destination inherits unless it sets its own.
    static let inherited: Set<String> = ["access_token_file", "test_event_code", "partner_name"]
    public static let scalars: [String] = [
        "db", "endpoint", "event_source", "event_source_id", "pixel_code", "access_token_file", "test_event_code", "partner_name",
        "metrics_listen", "log_level",
        "delivery.max_batch_events", "delivery.max_batch_bytes", "delivery.max_in_flight", "delivery.linger",
        "delivery.lease", "delivery.request_timeout", "delivery.connect_timeout", "delivery.max_attempts",
        "delivery.max_age", "delivery.backoff_base", "delivery.backoff_max", "delivery.probe_interval",
        "delivery.shutdown_budget", "delivery.retention", "delivery.dedup_window_margin", "delivery.keep_sent",
        "delivery.worker_priority",
    ] + transformScalars

    public static func environmentName(_ key: String) -> String {
        "TIKTOK_FORWARDER_" + key.replacingOccurrences(of: ".", with: "_").uppercased()
    }

    static let byEnvironmentName: [String: String] = Dictionary(uniqueKeysWithValues: scalars.map { (environmentName($0), $0) })

    /// `TIKTOK_FORWARDER_*` variables that are not settings: the configuration file's path,
    /// and debug builds' test hook.
    static let otherEnvironment: Set<String> = ["TIKTOK_FORWARDER_CONFIG", "TIKTOK_FORWARDER_TEST_CRASH_EVENT_ID"]

    /// The known variable nearest to `name` (edit distance ≤ 3), for a "did you mean".
    static func closestEnvironmentName(to name: String) -> String? {
        let candidates = Array(byEnvironmentName.keys) + Array(otherEnvironment)
        let scored = candidates.map { ($0, editDistance(Array(name.utf8), Array($0.utf8))) }.min { ($0.1, $0.0) < ($1.1, $1.0) }
        return scored.flatMap { $0.1 <= 3 ? $0.0 : nil }
    }

    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty else { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let substitution = previous + (a[i - 1] == b[j - 1] ? 0 : 1)
                previous = row[j]
                row[j] = min(substitution, row[j] + 1, row[j - 1] + 1)
            }
        }
        return row[b.count]
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Everything `run` needs, validated. Built by ``ForwarderConfiguration/resolve(_:environment:)``.
public struct ForwarderConfiguration: Sendable {
    public var databasePath: String
    public var endpoint: String
    /// Where events go: one per pixel (or app, or event set). The first is the default,
    /// which takes the rows whose `destination` is NULL.
    public var destinations: [Destination]
    /// Where to serve Prometheus metrics (`ADDR:PORT`), or `nil` for none.
    public var metricsListen: (host: String, port: Int)?
    /// trace, debug, info, notice (default), warning, error or critical.
    public var logLevel = "notice"
    public var delivery = DeliverySettings()

    public static let defaultEndpoint = "https://business-api.tiktok.com"

    /// The destination of rows whose `destination` is NULL.
    public var defaultDestination: Destination { destinations[0] }
    /// The default destination's transform (what `transform` uses unless told otherwise).
    public var transform: TransformSettings { defaultDestination.transform }

    /// The destination named `name` (or, for `nil`, the default one).
    public func destination(named name: String?) -> Destination? {
        guard let name else { return defaultDestination }
        return destinations.first { $0.name == name }
    }

    /// Validates the layers for the daemon. `environment` supplies `$CREDENTIALS_DIRECTORY`.
    public static func resolve(_ layers: ConfigLayers, environment: [String: String]) throws -> ForwarderConfiguration {
        guard let db = layers.scalar("db")?.0 else {
            throw ConfigurationError("no database: set db in the configuration file, TIKTOK_FORWARDER_DB, or --db")
        }
        if PostgresURI.isPostgres(db) {
            do { try PostgresURI.validate(db) } catch { throw ConfigurationError("db (\(layers.scalar("db")?.origin ?? "db")): \(error.message)") }
        }
        let endpoint = layers.scalar("endpoint")?.0 ?? defaultEndpoint
        try checkEndpoint(endpoint, origin: layers.scalar("endpoint")?.origin ?? "the default")
        let destinations = try Destination.resolveAll(layers, environment: environment)
        var config = ForwarderConfiguration(databasePath: db, endpoint: endpoint, destinations: destinations)
        if let (listen, origin) = layers.scalar("metrics_listen") {
            do {
                config.metricsListen = try MetricsServer.parseListen(listen)
            } catch let error as ConfigurationError {
                throw ConfigurationError("\(origin): \(error.description)")
            }
        }
        if let (level, origin) = layers.scalar("log_level") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level.trimmingWhitespace().lowercased()) else {
                throw ConfigurationError("\(origin): '\(SafeText.escapingControls(level))' is not a log level (\(levels.joined(separator: ", ")))")
            }
            config.logLevel = level.trimmingWhitespace().lowercased()
        }
        config.delivery = try DeliverySettings.resolve(layers)
        return config
    }

    /// Only https, except for loopback (the sandbox, a local proxy).
    public static func checkEndpoint(_ endpoint: String, origin: String) throws {
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty else {
            throw ConfigurationError("endpoint '\(endpoint)' (from \(origin)) is not a URL such as https://business-api.tiktok.com")
        }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        let ipv4Loopback = octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
        let loopback = host == "localhost" || ipv4Loopback || host == "::1" || host == "[::1]"
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw ConfigurationError("endpoint '\(endpoint)' (from \(origin)) must use https; plain http is allowed only to loopback (127.0.0.1, localhost)")
        }
    }

    /// The transform settings alone (what `transform` needs).
    public static func transformSettings(_ layers: ConfigLayers) throws -> TransformSettings {
        var settings = TransformSettings()
        if let (preset, origin) = layers.scalar("transform.preset") {
            guard let value = EventNamePreset(rawValue: preset) else { throw ConfigurationError("\(origin): '\(preset)' is not a preset (classic, current)") }
            settings.preset = value
        }
        if let (events, _) = layers.table("transform.events") {
            for (source, target) in events {
                // From a flag or the environment, false/null also mean "skip" (the YAML layer already mapped its own).
                settings.eventNames[source] = ["false", "null", "~"].contains(target.lowercased()) ? TransformSettings.doNotSend : target.trimmingWhitespace()
            }
        }
        if let (text, origin) = layers.scalar("transform.forward_unmapped") { settings.forwardUnmapped = try bool(text, origin) }
        if let (maps, origin) = layers.table("transform.map") {
            try addFields(maps, constants: false, origin, mapping: &settings.mapping, customFields: &settings.customFields)
        }
        if let (constants, origin) = layers.table("transform.set") {
            try addFields(constants, constants: true, origin, mapping: &settings.mapping, customFields: &settings.customFields)
        }
        // transform.events.NAME.map / .set: fields mapped differently for one event.
        for key in layers.values.keys.sorted() where key.hasPrefix("transform.events.") {
            let parts = key.dropFirst("transform.events.".count)
            guard let dot = parts.lastIndex(of: "."), let (table, origin) = layers.table(key) else { continue }
            let name = String(parts[..<dot])
            var override = settings.eventOverrides[name] ?? EventOverride()
            try addFields(table, constants: parts[parts.index(after: dot)...] == "set", origin,
                          mapping: &override.mapping, customFields: &override.customFields)
            settings.eventOverrides[name] = override
        }
        if let (text, origin) = layers.scalar("transform.view_content") {
            guard let choice = ViewContentChoice(rawValue: text.trimmingWhitespace()) else {
                throw ConfigurationError("\(origin): '\(text)' is not page_view, view_item or both")
            }
            settings.viewContent = choice
        }
        if let (country, origin) = layers.scalar("transform.default_phone_country") {
            let code = country.hasPrefix("+") ? String(country.dropFirst()) : country
            guard (1...3).contains(code.count), code.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw ConfigurationError("\(origin): '\(country)' is not a calling code (1 to 3 digits, e.g. 33)")
            }
            settings.defaultPhoneCountryCode = code
        }
        if let (text, origin) = layers.scalar("transform.keep_external_id_case") { settings.lowercaseExternalID = !(try bool(text, origin)) }
        if let (text, origin) = layers.scalar("transform.content_type") {
            guard let value = ContentType(rawValue: text) else { throw ConfigurationError("\(origin): '\(text)' is neither product nor product_group") }
            settings.contentType = value
        }
        if let (text, origin) = layers.scalar("transform.max_age") { settings.maxEventAgeSeconds = try duration(text, origin) / 1000 }
        if let (text, _) = layers.scalar("transform.default_page_url") { settings.defaultPageURL = text }
        if let (text, origin) = layers.scalar("transform.hash") {
            for key in text.split(separator: ",").map({ $0.trimmingWhitespace() }) where !key.isEmpty {
                var found = false
                for index in settings.customFields.indices where "\(settings.customFields[index].object.rawValue).\(settings.customFields[index].key)" == key {
                    settings.customFields[index].hashed = true
                    found = true
                }
                for name in settings.eventOverrides.keys {
                    for index in settings.eventOverrides[name]!.customFields.indices
                    where "\(settings.eventOverrides[name]!.customFields[index].object.rawValue).\(settings.eventOverrides[name]!.customFields[index].key)" == key {
                        settings.eventOverrides[name]!.customFields[index].hashed = true
                        found = true
                    }
                }
                guard found else {
                    throw ConfigurationError("\(origin): '\(key)' is not a custom property of transform.map or transform.set (TikTok's own hashed fields are hashed anyway)")
                }
            }
        }
        return settings
    }

    /// The entries of a `map` (source paths) or `set` (constants) table, for the whole
    /// transform or for one event. A field both mapped and set takes its paths with the
    /// constant as the fallback (``merged(_:_:)``); keys under `user.` or `properties.` that are
    /// not TikTok's are custom properties.
    private static func addFields(_ table: [String: String], constants: Bool, _ origin: String,
                                  mapping: inout [TargetField: FieldSource], customFields: inout [CustomField]) throws {
        for (target, text) in table.sorted(by: { $0.key < $1.key }) {
            let source: FieldSource
            if constants {
                source = .constant((try? JSONParser.parse(text)) ?? .string(text))
            } else {
                guard let paths = FieldSource.parsePaths(text) else {
                    throw ConfigurationError("\(origin): \(target): '\(text)' is not a list of dot-separated paths")
                }
                source = paths
            }
            if let field = TargetField(rawValue: target) {
                mapping[field] = merged(mapping[field], source)
            } else {
                let (object, key) = try customKey(target, origin)
                if let index = customFields.firstIndex(where: { $0.object == object && $0.key == key }) {
                    customFields[index].source = merged(customFields[index].source, source)
                } else {
                    customFields.append(CustomField(object: object, key: key, source: source))
                }
            }
        }
    }

    /// `map` and `set` of one field together: its paths, then the constant.
    private static func merged(_ existing: FieldSource?, _ new: FieldSource) -> FieldSource {
        guard let existing else { return new }
        return FieldSource(paths: new.paths.isEmpty ? existing.paths : new.paths, constant: new.constant ?? existing.constant)
    }

    /// A `user.*` or `properties.*` key that is not TikTok's: a custom property.
    private static func customKey(_ target: String, _ origin: String) throws -> (CustomField.Object, String) {
        guard let (object, key) = CustomField.parse(target) else { throw unknownTarget(target, origin) }
        // A key a typo away from one of TikTok's (user.mail, properties.curency) is a mistake,
        // not a custom property: it would silently leave the real field unmapped.
        let distances = (CustomField.standardKeys[object] ?? []).map { ($0, ConfigKeys.editDistance(Array(key.utf8), Array($0.utf8))) }
        // One edit from a key of 4+ letters, two from one of 8+ (`user.zip` stays custom: `ip` is short).
        if let (near, distance) = distances.min(by: { ($0.1, $0.0) < ($1.1, $1.0) }),
           (distance == 1 && near.count >= 4) || (distance == 2 && near.count >= 8) {
            let error = unknownTarget(target, origin)
            throw ConfigurationError(error.description + "; did you mean \(object.rawValue).\(near)?")
        }
        return (object, key)
    }

    static func unknownTarget(_ target: String, _ origin: String) -> ConfigurationError {
        ConfigurationError("\(origin): '\(target)' is not a TikTok field (one of: \(TargetField.allCases.map(\.rawValue).joined(separator: ", "))), nor a custom property (user.NAME or properties.NAME: letters, digits, underscores)")
    }

    static func bool(_ text: String, _ origin: String) throws -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigurationError("\(origin): '\(text)' is not true or false")
        }
    }

    static func duration(_ text: String, _ origin: String) throws -> Int64 {
        guard let millis = Durations.parseMillis(text) else {
            throw ConfigurationError("\(origin): '\(text)' is not a duration such as 500ms, 30s, 5m, 24h or 7d (at most 36500d)")
        }
        return millis
    }

    static func integer(_ text: String, _ origin: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text.trimmingWhitespace()), range.contains(value) else {
            throw ConfigurationError("\(origin): '\(text)' is not a whole number in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }
}

/// How the daemon delivers. Defaults suit TikTok; tests and benchmarks shorten the times.
public struct DeliverySettings: Sendable, Equatable {
    /// Events per request (TikTok accepts at most 1,000).
    public var maxBatchEvents = 1_000
    /// Request body cap in bytes; rows beyond it wait for the next batch.
    public var maxBatchBytes = 4 << 20
    /// Requests in flight at most (each on its own worker thread and connection).
    public var maxInFlight = 4
    /// How long an idle worker waits before looking for new rows again.
    public var lingerMillis: Int64 = 50
    /// How long a claim is held. Must outlive a request, so it is at least 3 request timeouts.
    public var leaseMillis: Int64 = 120_000
    public var requestTimeoutMillis: Int64 = 30_000
    public var connectTimeoutMillis: Int64 = 5_000
    public var retry = RetryPolicy()
    /// How often a paused daemon retries with one event (after a configuration error).
    public var probeIntervalMillis: Int64 = 30_000
    /// How long SIGTERM waits for requests in flight (default: a request timeout and 5 s).
    public var shutdownBudgetMillis: Int64 = 35_000
    /// Delivered and skipped rows are deleted this long after they finished.
    public var retentionMillis: Int64 = 7 * 86_400_000
    /// Keep each delivered event as sent (hashed, as TikTok received it) until retention, for
    /// `tiktok-forwarder show`. Off by default: it writes each event once more.
    public var keepSent = false
    /// The CPU priority of the delivery workers (transform, encoding, HTTP); the thread that
    /// writes the outbox and the supervisor keep the process's own.
    public var workerPriority = WorkerPriority.low

    public init() {}

    static func resolve(_ layers: ConfigLayers) throws -> DeliverySettings {
        var d = DeliverySettings()
        typealias C = ForwarderConfiguration
        if let (t, o) = layers.scalar("delivery.max_batch_events") { d.maxBatchEvents = try C.integer(t, o, 1...TrackRequest.maximumEvents) }
        if let (t, o) = layers.scalar("delivery.max_batch_bytes") { d.maxBatchBytes = try C.integer(t, o, 4_096...(64 << 20)) }
        if let (t, o) = layers.scalar("delivery.max_in_flight") { d.maxInFlight = try C.integer(t, o, 1...64) }
        if let (t, o) = layers.scalar("delivery.keep_sent") { d.keepSent = try C.bool(t, o) }
        if let (t, o) = layers.scalar("delivery.worker_priority") {
            guard let priority = WorkerPriority(rawValue: t.trimmingWhitespace().lowercased()) else {
                throw ConfigurationError("\(o): '\(t)' is not a worker priority: idle, low or normal")
            }
            d.workerPriority = priority
        }
        if let (t, o) = layers.scalar("delivery.linger") { d.lingerMillis = try C.duration(t, o) }
        if let (t, o) = layers.scalar("delivery.request_timeout") { d.requestTimeoutMillis = max(1, try C.duration(t, o)) }
        if let (t, o) = layers.scalar("delivery.connect_timeout") { d.connectTimeoutMillis = max(1, try C.duration(t, o)) }
        if let (t, o) = layers.scalar("delivery.lease") {
            d.leaseMillis = try C.duration(t, o)
            guard d.leaseMillis >= 3 * d.requestTimeoutMillis else {
                throw ConfigurationError("\(o): the lease (\(t)) must be at least 3 request timeouts (\(Durations.format(millis: 3 * d.requestTimeoutMillis))) so that a claim outlives its requests")
            }
        } else {
            d.leaseMillis = max(d.leaseMillis, 3 * d.requestTimeoutMillis)
        }
        if let (t, o) = layers.scalar("delivery.max_attempts") { d.retry.maxAttempts = try C.integer(t, o, 1...1_000) }
        if let (t, o) = layers.scalar("delivery.max_age") { d.retry.maxAgeMillis = try C.duration(t, o) }
        if let (t, o) = layers.scalar("delivery.backoff_base") { d.retry.baseMillis = max(1, try C.duration(t, o)) }
        if let (t, o) = layers.scalar("delivery.backoff_max") { d.retry.capMillis = max(d.retry.baseMillis, try C.duration(t, o)) }
        if let (t, o) = layers.scalar("delivery.dedup_window_margin") { d.retry.dedupWindowMarginMillis = try C.duration(t, o) }
        if let (t, o) = layers.scalar("delivery.probe_interval") { d.probeIntervalMillis = max(10, try C.duration(t, o)) }
        if let (t, o) = layers.scalar("delivery.shutdown_budget") {
            d.shutdownBudgetMillis = try C.duration(t, o)
        } else {
            d.shutdownBudgetMillis = d.requestTimeoutMillis + 5_000
        }
        if let (t, o) = layers.scalar("delivery.retention") { d.retentionMillis = try C.duration(t, o) }
        return d
    }
}

/// The access token, read from its file. Surrounding whitespace (a trailing newline) is ignored.
public enum AccessTokenFile {
    public static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            guard FileManager.default.fileExists(atPath: path) else {
                // The value is not shown: set by mistake to the token itself, it would be
                // printed (and land in a journal or a CI log).
                throw ConfigurationError("cannot read the access token file: no such file (the path is not shown, in case it is the token itself: access_token_file must name a file that holds the token)")
            }
            throw ConfigurationError("cannot read the access token file \(path): permission denied (run as the service user, or under systemd with LoadCredential=)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingWhitespace()
        guard !token.isEmpty else { throw ConfigurationError("the access token file \(path) is empty") }
        guard !token.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw ConfigurationError("the access token file \(path) holds more than one line")
        }
        return token
    }
}

/// How much of the CPU the delivery workers may take from the producers' processes.
///
/// Producers are the users' web requests, and a drain (a backlog after a TikTok outage) is
/// CPU-bound: workers of the same priority as the producers delay their wake-ups and their
/// commits by milliseconds on a saturated machine (measured in BENCHMARKS.md).
public enum WorkerPriority: String, Sendable, Equatable, CaseIterable {
    /// `SCHED_IDLE`: the workers run when the cores are otherwise free, and any process of
    /// normal priority that wakes up preempts them at once. A host kept busy by other work
    /// leaves the drain almost nothing (Linux gives an idle thread about 0.3 % of a core
    /// against each busy process of normal priority), so a backlog waits for a quieter moment.
    case idle
    /// nice 10, the default: a process of normal priority gets about nine tenths of a core it
    /// shares with a worker, so producers get the cores first, and a drain still progresses
    /// on a busy host.
    case low
    /// The process's own priority: the workers compete with the producers as equals.
    case normal
}
