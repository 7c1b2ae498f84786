import ArgumentParser
import ForwarderCore
import ForwarderDaemon

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

    @Option(help: ArgumentHelp("The event source: web (default), app, offline, crm, or auto (app for events with a context.app, else web).", valueName: "source"))
    var eventSource: String?

    @Option(help: ArgumentHelp("Which events become ViewContent: page_view, view_item or both (default: the preset's table).", valueName: "choice"))
    var viewContent: String?

    /// Adds the flags that were given as the top configuration layer.
    func add(to layers: inout ConfigLayers) throws {
        layers.set("transform.preset", preset, origin: "--preset")
        if !events.isEmpty {
            layers.set("transform.events", .table(Dictionary(try events.map { try split($0, option: "--event") }, uniquingKeysWith: { $1 })), origin: "--event")
        }
        if forwardUnmapped { layers.set("transform.forward_unmapped", "true", origin: "--forward-unmapped") }
        if !maps.isEmpty {
            layers.set("transform.map", .table(Dictionary(try maps.map { try split($0, option: "--map") }, uniquingKeysWith: { $1 })), origin: "--map")
        }
        if !constants.isEmpty {
            layers.set("transform.set", .table(Dictionary(try constants.map { try split($0, option: "--set") }, uniquingKeysWith: { $1 })), origin: "--set")
        }
        layers.set("transform.default_phone_country", defaultPhoneCountry, origin: "--default-phone-country")
        if keepExternalIdCase { layers.set("transform.keep_external_id_case", "true", origin: "--keep-external-id-case") }
        layers.set("transform.content_type", contentType, origin: "--content-type")
        layers.set("transform.max_age", maxAge, origin: "--max-age")
        layers.set("transform.default_page_url", defaultPageUrl, origin: "--default-page-url")
        layers.set("event_source", eventSource, origin: "--event-source")
        layers.set("transform.view_content", viewContent, origin: "--view-content")
    }

    private func split(_ entry: String, option: String) throws -> (String, String) {
        guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex, entry.index(after: eq) != entry.endIndex else {
            throw ValidationError("\(option): '\(entry)' is not of the form name=value")
        }
        return (String(entry[..<eq]).trimmingWhitespace(), String(entry[entry.index(after: eq)...]).trimmingWhitespace())
    }
}
