import ForwarderCore
import Foundation

/// One TikTok destination: a pixel, an app or an event set, with its own token, test code,
/// preset and mapping. Rows choose one by their `destination` column (NULL: the default).
///
/// Without a `destinations:` section the top-level keys (`pixel_code`, `access_token_file`,
/// `transform`…) make the one destination, named `default`. With one, each entry names its
/// own source id and inherits the top level's token file, test code, partner name and
/// transform unless it sets its own.
public struct Destination: Sendable {
    public var name: String
    /// The configured event source (`auto`: per event; see ``Transformer/eventSource(of:)``).
    public var eventSource: EventSourceSetting { transform.eventSource }
    /// The `event_source_id` of each source this destination sends.
    public var sourceIDs: [EventSource: String]
    public var accessTokenFile: String
    public var testEventCode: String?
    /// TikTok's optional integration tag (`partner_name`), sent only when set.
    public var partnerName: String?
    public var transform: TransformSettings

    /// The name of the single destination of a configuration without `destinations:`.
    public static let defaultName = "default"

    /// The pixel code (web), for logs and the single-pixel case.
    public var pixelCode: String? { sourceIDs[.web] }

    /// `web C123…`, `app 7012…`, `auto (web C123…, app 7012…)`.
    public var summary: String {
        let ids = EventSource.allCases.compactMap { source in sourceIDs[source].map { "\(source.rawValue) \($0)" } }
        return eventSource == .auto ? "auto (\(ids.joined(separator: ", ")))" : ids.joined(separator: ", ")
    }

    /// Every destination of the configuration, the default first. `dryRun` (for
    /// `transform`): no token needed, and a missing source id becomes a placeholder.
    public static func resolveAll(_ layers: ConfigLayers, environment: [String: String], dryRun: Bool = false) throws -> [Destination] {
        guard !layers.destinations.isEmpty else {
            return [try resolve(layers, name: defaultName, origin: "", credentialNames: ["access-token"], environment: environment, dryRun: dryRun)]
        }
        for key in ["pixel_code", "event_source_id", "event_source"] {
            if let origin = layers.values[key]?.origin {
                throw ConfigurationError("\(origin): \(key) is set at the top level and destinations: is given; set it in each destination instead")
            }
        }
        var result: [Destination] = []
        var defaultIndex: Int?
        for (entry, origin) in layers.destinations {
            guard let (name, nameOrigin) = entry.scalar("name") else { throw ConfigurationError("\(origin): a destination needs a name (the value producers write in the destination column)") }
            guard (1...64).contains(name.utf8.count), name.utf8.allSatisfy({ Self.nameBytes.contains($0) }) else {
                throw ConfigurationError("\(nameOrigin): '\(SafeText.escapingControls(name))' is not a destination name (1 to 64 letters, digits, '-', '_' or '.')")
            }
            guard !result.contains(where: { $0.name == name }) else { throw ConfigurationError("\(nameOrigin): two destinations are named '\(name)'") }
            if let (flag, flagOrigin) = entry.scalar("default"), try ForwarderConfiguration.bool(flag, flagOrigin) {
                if let defaultIndex { throw ConfigurationError("\(flagOrigin): '\(result[defaultIndex].name)' is already the default destination") }
                defaultIndex = result.count
            }
            let merged = layers.inheritable().overlaid(with: entry)
            result.append(try resolve(merged, name: name, origin: "destination '\(name)': ", credentialNames: ["access-token-\(name)", "access-token"],
                                      environment: environment, dryRun: dryRun))
        }
        if let defaultIndex { result.insert(result.remove(at: defaultIndex), at: 0) }
        return result
    }

    private static let nameBytes = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.".utf8))

    private static func resolve(_ layers: ConfigLayers, name: String, origin prefix: String, credentialNames: [String],
                                environment: [String: String], dryRun: Bool) throws -> Destination {
        var transform = try ForwarderConfiguration.transformSettings(layers)
        if let (text, origin) = layers.scalar("event_source") {
            guard let setting = EventSourceSetting(rawValue: text.trimmingWhitespace().lowercased()) else {
                throw ConfigurationError("\(origin): '\(SafeText.escapingControls(text))' is not an event source (web, app, offline, crm or auto)")
            }
            transform.eventSource = setting
        }
        let setting = transform.eventSource
        var ids: [EventSource: String] = [:]
        var idOrigins: [EventSource: String] = [:]
        if let (table, origin) = layers.table("event_source_id") {
            for (key, id) in table {
                guard let source = EventSource(rawValue: key) else {
                    throw ConfigurationError("\(origin): '\(SafeText.escapingControls(key))' is not an event source (web, app, offline, crm)")
                }
                ids[source] = id.trimmingWhitespace()
                idOrigins[source] = origin
            }
        } else if let (id, origin) = layers.scalar("event_source_id") {
            guard let fixed = setting.fixed else {
                throw ConfigurationError("\(origin): with event_source auto, give one id per source: event_source_id: {web: PIXEL_CODE, app: APP_ID}")
            }
            ids[fixed] = id.trimmingWhitespace()
            idOrigins[fixed] = origin
        }
        if let (pixel, origin) = layers.scalar("pixel_code") {
            if let other = ids[.web], other != pixel.trimmingWhitespace() {
                throw ConfigurationError("\(origin): pixel_code and event_source_id both name the web pixel, differently; keep one")
            }
            if let fixed = setting.fixed, fixed != .web {
                throw ConfigurationError("\(origin): pixel_code is a web id, but the event source is \(fixed.rawValue); set event_source_id to the \(fixed.idName)")
            }
            ids[.web] = pixel.trimmingWhitespace()
            idOrigins[.web] = origin
        }
        ids = ids.filter { !$0.value.isEmpty }
        let needed: [EventSource] = setting.fixed.map { [$0] } ?? [.web, .app]
        for source in needed where ids[source] == nil {
            if dryRun {
                ids[source] = source == .web ? "PIXEL_CODE" : "0000000000"  // a number, as app and event set ids are
                continue
            }
            if source == .web, setting == .web {
                throw ConfigurationError("\(prefix)no pixel code: set pixel_code\(prefix.isEmpty ? " in the configuration file, TIKTOK_FORWARDER_PIXEL_CODE, or --pixel-code" : "") (or event_source_id)")
            }
            throw ConfigurationError("\(prefix)event source \(setting.rawValue) needs the \(source.idName): set event_source_id\(setting == .auto ? ": {\(source.rawValue): …}" : "")")
        }
        for (source, id) in ids {
            if let fixed = setting.fixed, fixed != source {
                throw ConfigurationError("\(idOrigins[source]!): a \(source.rawValue) id for a destination whose event source is \(fixed.rawValue)")
            }
            guard source.accepts(id: id) else {
                let what = source == .web ? "a pixel code is not a number (a number is a TikTok App ID or an event set ID)" : "the \(source.idName) is a number"
                throw ConfigurationError("\(idOrigins[source]!): '\(SafeText.escapingControls(id))' is not a \(source.idName): \(what); TikTok refuses a mismatch with \"Invalid value for event_source_id\"")
            }
        }
        var tokenFile = ""
        if dryRun {
            tokenFile = layers.scalar("access_token_file")?.0 ?? ""
        } else if let file = layers.scalar("access_token_file")?.0 {
            tokenFile = file
        } else if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            let candidates = credentialNames.map { credentials + "/" + $0 }
            tokenFile = candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates.last!
        } else {
            throw ConfigurationError("\(prefix)no access token: set access_token_file (TIKTOK_FORWARDER_ACCESS_TOKEN_FILE, --access-token-file) or provide the systemd credential '\(credentialNames[0])'; the token itself is never accepted on the command line")
        }
        if !dryRun {
            do {
                _ = try AccessTokenFile.read(tokenFile)
            } catch let error as ConfigurationError {
                throw ConfigurationError(prefix + error.description)
            }
        }
        return Destination(name: name, sourceIDs: ids, accessTokenFile: tokenFile, testEventCode: layers.scalar("test_event_code")?.0,
                           partnerName: layers.scalar("partner_name")?.0.trimmingWhitespace(), transform: transform)
    }
}
