import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import Foundation

struct Transform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: show what each source event would become, without sending anything.",
        discussion: """
            Reads NDJSON source events (a file, or standard input) and writes one NDJSON result \
            per input line:
              {"line": N, "outcome": "event"|"skipped"|"rejected", "event": {…}, "reason": "…", "warnings": […]}
            `event` appears only for outcome "event", `reason` only for the others. The event id \
            is the line's top-level event_id, else context.event_id; the insert time is now.

            Exit status: 0 when every line was processed (skips and rejects included), 2 on bad usage.
            """
    )

    @Argument(help: ArgumentHelp("NDJSON file to read (default: standard input).", valueName: "file"))
    var file: String?

    @Option(help: ArgumentHelp("YAML configuration file of the daemon (default: $TIKTOK_FORWARDER_CONFIG): its transform settings apply.", valueName: "file"))
    var config: String?

    @OptionGroup(title: "Transform settings") var transformOptions: TransformOptions

    func run() throws {
        var layers = try DatabaseOptions.parse(config.map { ["--config", $0] } ?? []).layers()
        try transformOptions.add(to: &layers)
        let settings: TransformSettings
        do {
            settings = try ForwarderConfiguration.transformSettings(layers)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        let transformer = Transformer(settings: settings)
        let data = try readInput(file)
        let now = currentMillis()
        var out = JSONWriter(capacity: 1 << 16)
        for (number, bytes) in NDJSONLine.lines(data) {
            out.raw("{\"line\":"); out.integer(Int64(number))
            let outcome: TransformOutcome
            switch Result(catching: { () throws(JSONParseError) -> JSON in try JSONParser.parse(Array(bytes)) }) {
            case .failure(let error):
                outcome = .rejected(reason: "payload is not JSON (\(error.description))")
            case .success(let source):
                if let eventID = NDJSONLine.eventID(of: source) {
                    outcome = transformer.transform(source: source, eventID: eventID, insertedAtMillis: now, nowMillis: now)
                } else if case .object = source {
                    outcome = .rejected(reason: "no event id (neither event_id nor context.event_id)")
                } else {
                    outcome = .rejected(reason: "payload is not a JSON object")
                }
            }
            switch outcome {
            case .event(let event, let warnings):
                out.raw(",\"outcome\":\"event\",\"event\":")
                event.encode(into: &out)
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
            if out.bytes.count > 1 << 16 {
                FileHandle.standardOutput.write(Data(out.bytes))
                out.bytes.removeAll(keepingCapacity: true)
            }
        }
        FileHandle.standardOutput.write(Data(out.bytes))
    }
}
