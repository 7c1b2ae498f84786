import ArgumentParser
import ForwarderCore

/// The transform settings as flags, shared by `transform` and `run`. Each flag, when given,
/// overrides the configuration file and the environment.
struct TransformOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Event-name preset: classic (default) or current.", valueName: "preset"))
    var preset: String?

    @Option(name: .customLong("event"), help: ArgumentHelp("Map a source event name to a TikTok name (repeatable).", valueName: "source=TikTokName"))
    var events: [String] = []

    @Flag(help: "Send event names with no mapping verbatim as custom events instead of skipping them.")
    var forwardUnmapped = false

    @Option(name: .customLong("map"), help: ArgumentHelp("Replace the source paths of a TikTok field (repeatable), e.g. user.email=customer.mail,contact.email.", valueName: "target=path[,path…]"))
    var maps: [String] = []

    @Option(name: .customLong("set"), help: ArgumentHelp("Set a TikTok field to a constant (repeatable), e.g. user.locale=fr-FR.", valueName: "target=value"))
    var constants: [String] = []

    @Option(help: ArgumentHelp("Calling code for phone numbers written without one, e.g. 33.", valueName: "code"))
    var defaultPhoneCountry: String?

    @Flag(help: "Hash external ids as they are instead of lowercasing them first.")
    var keepExternalIdCase = false

    @Option(help: ArgumentHelp("properties.content_type when the event has none: product (default) or product_group.", valueName: "type"))
    var contentType: String?

    @Option(help: ArgumentHelp("Reject events older than this as expired (default 7d).", valueName: "duration"))
    var maxAge: String?

    @Option(help: ArgumentHelp("page.url for events that carry none.", valueName: "url"))
    var defaultPageUrl: String?

    /// Applies the flags that were given on top of `settings`.
    func apply(to settings: inout TransformSettings) throws {
        if let preset {
            guard let value = EventNamePreset(rawValue: preset) else {
                throw ValidationError("--preset: '\(preset)' is not a preset (classic, current)")
            }
            settings.preset = value
        }
        for entry in events {
            let (source, target) = try split(entry, option: "--event")
            settings.eventNames[source] = target
        }
        if forwardUnmapped { settings.forwardUnmapped = true }
        for entry in maps {
            let (target, paths) = try split(entry, option: "--map")
            guard let field = TargetField(rawValue: target) else { throw unknownTarget(target, option: "--map") }
            guard let source = FieldSource.parsePaths(paths) else {
                throw ValidationError("--map \(target): '\(paths)' is not a list of dot-separated paths")
            }
            settings.mapping[field] = source
        }
        for entry in constants {
            let (target, value) = try split(entry, option: "--set")
            guard let field = TargetField(rawValue: target) else { throw unknownTarget(target, option: "--set") }
            settings.mapping[field] = .constant((try? JSONParser.parse(value)) ?? .string(value))
        }
        if let defaultPhoneCountry {
            let code = defaultPhoneCountry.hasPrefix("+") ? String(defaultPhoneCountry.dropFirst()) : defaultPhoneCountry
            guard (1...3).contains(code.count), code.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw ValidationError("--default-phone-country: '\(defaultPhoneCountry)' is not a calling code (1 to 3 digits, e.g. 33)")
            }
            settings.defaultPhoneCountryCode = code
        }
        if keepExternalIdCase { settings.lowercaseExternalID = false }
        if let contentType {
            guard let value = ContentType(rawValue: contentType) else {
                throw ValidationError("--content-type: '\(contentType)' is neither product nor product_group")
            }
            settings.contentType = value
        }
        if let maxAge { settings.maxEventAgeSeconds = try parseDuration(maxAge, option: "--max-age") / 1000 }
        if let defaultPageUrl { settings.defaultPageURL = defaultPageUrl }
    }

    private func split(_ entry: String, option: String) throws -> (String, String) {
        guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex, entry.index(after: eq) != entry.endIndex else {
            throw ValidationError("\(option): '\(entry)' is not of the form name=value")
        }
        return (String(entry[..<eq]).trimmingWhitespace(), String(entry[entry.index(after: eq)...]).trimmingWhitespace())
    }

    private func unknownTarget(_ target: String, option: String) -> ValidationError {
        ValidationError("\(option): '\(target)' is not a TikTok field; one of: \(TargetField.allCases.map(\.rawValue).joined(separator: ", "))")
    }
}
