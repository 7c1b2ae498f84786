import ArgumentParser
import ForwarderCore
import Foundation

/// Measurement entry points for scripts/bench-*: hidden from --help, not for operators.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks used by scripts/bench-* (not for production use).",
        shouldDisplay: false,
        subcommands: [TransformSpeed.self]
    )

    struct TransformSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "transform",
            abstract: "Time payload bytes → encoded TikTok event bytes, per event; print JSON.")

        @Argument(help: "NDJSON source events.") var file: String
        @Option(help: "Passes over the file.") var passes = 20

        func run() throws {
            let lines = NDJSONLine.lines(try readInput(file)).map { Array($0.bytes) }
            let ids = lines.map { line in (try? JSONParser.parse(line)).flatMap(NDJSONLine.eventID) ?? "id" }
            let transformer = Transformer()
            let now = currentMillis()
            var samples: [Double] = []
            samples.reserveCapacity(lines.count * passes)
            var totalBytes = 0
            var events = 0
            let clock = ContinuousClock()
            let wall = clock.now
            for _ in 0..<passes {
                for (line, id) in zip(lines, ids) {
                    let start = clock.now
                    if case .event(let event, _) = transformer.transform(payload: line, eventID: id, insertedAtMillis: now, nowMillis: now) {
                        totalBytes &+= event.encoded().count
                        events += 1
                    }
                    let elapsed = clock.now - start
                    samples.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
                }
            }
            let seconds = (clock.now - wall) / .seconds(1)
            samples.sort()
            func percentile(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
            let inputBytes = lines.reduce(0) { $0 + $1.count } / max(lines.count, 1)
            print(#"{"events":\#(events),"input_bytes_avg":\#(inputBytes),"output_bytes_avg":\#(totalBytes / max(events, 1)),"#
                + #""median_us":\#(round(percentile(0.5) * 100) / 100),"p99_us":\#(round(percentile(0.99) * 100) / 100),"#
                + #""events_per_second_one_core":\#(Int(Double(samples.count) / seconds))}"#)
        }
    }
}
