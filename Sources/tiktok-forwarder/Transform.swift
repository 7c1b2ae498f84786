import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import Foundation

struct Transform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: show what each event would become, and the request TikTok would get, without sending anything.",
        discussion: """
            Reads NDJSON (a file, or standard input), one event per line, in either form:
              the row as producers write it:  {"event_id": "ord-1", "payload": {…} or "…JSON text…", "destination": "…"}
              a bare source event:            {"event_name": "purchase", …}  (its id: --event-id, else event_id, else context.event_id)
            and writes one NDJSON result per line:
              {"line": N, "event_id": "…", "outcome": "event"|"skipped"|"rejected", "event": {…}, "request": {…},
               "sources": {"user.email": "user.email", …}, "reason": "…", "warnings": […]}
            `request` is the body the daemon would POST for this event alone (event source and \
            id from the configuration, else PIXEL_CODE); `sources` says which source path filled \
            each field (the mapping decisions, and the event source); `event`, `request` and \
            `sources` appear only for outcome "event", `reason` only for the others. The insert \
            time is now. With `destinations:` configured, each row goes through its destination's \
            settings (its `destination`, else --destination, else the default destination); the \
            result then names it.

            Exit status: 0 when every line was processed (skips and rejects included), 2 on bad usage.
            """
    )

    @Argument(help: ArgumentHelp("NDJSON file to read (default: standard input).", valueName: "file"))
    var file: String?

    @Option(help: ArgumentHelp("YAML configuration file of the daemon (default: $TIKTOK_FORWARDER_CONFIG): its transform settings apply.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("The event id for bare source events (the producer's event_id column), when the payload has none.", valueName: "id"))
    var eventID: String?

    @Option(help: ArgumentHelp("The destination of rows that name none (default: the configuration's default destination).", valueName: "name"))
    var destination: String?

    @OptionGroup(title: "Transform settings") var transformOptions: TransformOptions

    func run() throws {
        var layers = try DatabaseOptions.parse(config.map { ["--config", $0] } ?? []).layers()
        try transformOptions.add(to: &layers)
        let destinations: [Destination]
        do {
            destinations = try Destination.resolveAll(layers, environment: ProcessInfo.processInfo.environment, dryRun: true)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        if let destination, !destinations.contains(where: { $0.name == destination }) {
            throw ValidationError("--destination: '\(destination)' is not configured (configured: \(destinations.map(\.name).joined(separator: ", ")))")
        }
        let transformers = Dictionary(uniqueKeysWithValues: destinations.map { ($0.name, Transformer(settings: $0.transform)) })
        let fallback = destination ?? destinations[0].name
        let data = try readInput(file)
        let now = currentMillis()
        var out = JSONWriter(capacity: 1 << 16)
        for (number, bytes) in NDJSONLine.lines(data) {
            out.raw("{\"line\":"); out.integer(Int64(number))
            let named = Self.destination(of: Array(bytes))
            guard let target = destinations.first(where: { $0.name == (named ?? fallback) }) else {
                out.raw(",\"outcome\":\"rejected\",\"reason\":")
                out.string(Route.unknownReason(named ?? "", known: destinations.map(\.name)))
                out.raw(",\"warnings\":[]}\n")
                continue
            }
            let transformer = transformers[target.name]!
            let (outcome, id, source) = Self.transform(Array(bytes), eventID: eventID, transformer: transformer, now: now)
            if let id { out.raw(",\"event_id\":"); out.string(id) }
            if destinations.count > 1 { out.raw(",\"destination\":"); out.string(target.name) }
            switch outcome {
            case .event(let event, let warnings):
                out.raw(",\"outcome\":\"event\",\"event\":")
                var single = JSONWriter(capacity: 1024)
                event.encode(into: &single)
                out.raw(single.bytes)
                out.raw(",\"request\":")
                out.raw(TrackRequest.body(source: event.source, sourceID: target.sourceIDs[event.source] ?? "NO_\(event.source.rawValue.uppercased())_ID_CONFIGURED",
                                          testEventCode: target.testEventCode, partnerName: target.partnerName, events: [single.bytes]))
                out.raw(",\"sources\":")
                var sources = JSONObject()
                for decision in transformer.decisions(for: source ?? .null) { sources.append(decision.field, .string(decision.source)) }
                out.value(.object(sources))
                out.raw(",\"warnings\":")
                out.value(.array(warnings.map(JSON.string)))
            case .skipped(let reason):
                out.raw(",\"outcome\":\"skipped\",\"reason\":"); out.string(reason)
                out.raw(",\"warnings\":[]")
            case .rejected(let reason):
                out.raw(",\"outcome\":\"rejected\",\"reason\":"); out.string(reason)
                out.raw(",\"warnings\":[]")
            }
            out.raw("}\n")
            if out.count > 1 << 16 {
                FileHandle.standardOutput.write(Data(out.bytes))
                out.truncate(to: 0)
            }
        }
        FileHandle.standardOutput.write(Data(out.bytes))
    }

    /// The `destination` of a producer-row line, if it names one.
    static func destination(of bytes: [UInt8]) -> String? {
        guard let line = try? JSONParser.parse(bytes), line["payload"] != nil else { return nil }
        return line["destination"].flatMap(Normalise.text)
    }

    /// One input line: a producer row (`event_id` + `payload`) or a bare source event.
    static func transform(_ bytes: [UInt8], eventID flag: String?, transformer: Transformer, now: UnixMillis)
        -> (outcome: TransformOutcome, eventID: String?, source: JSON?) {
        let line: JSON
        do {
            line = try JSONParser.parse(bytes)
        } catch {
            return (.rejected(reason: "payload is not JSON (\(error.description))"), flag, nil)
        }
        var source = line
        var id = flag
        // The row as producers write it: the payload is the event, the column its id.
        if case .object(let members) = line, let payload = line["payload"], members.keys.count <= 3,
           members.keys.allSatisfy({ ["event_id", "payload", "destination"].contains($0) }) {
            id = line["event_id"].flatMap(Normalise.text) ?? flag
            switch payload {
            case .string(let text):
                guard let parsed = try? JSONParser.parse(text) else { return (.rejected(reason: "payload is not JSON"), id, nil) }
                source = parsed
            default:
                source = payload
            }
        }
        guard case .object = source else { return (.rejected(reason: "payload is not a JSON object"), id, source) }
        guard let eventID = id ?? NDJSONLine.eventID(of: source) else {
            return (.rejected(reason: "no event id: pass --event-id, or give {\"event_id\":…, \"payload\":…} lines"), nil, source)
        }
        return (transformer.transform(source: source, eventID: eventID, insertedAtMillis: now, nowMillis: now), eventID, source)
    }
}
