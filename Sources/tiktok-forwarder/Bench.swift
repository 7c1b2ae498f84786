import ArgumentParser
import ForwarderCore
import ForwarderStore
import ForwarderTransport
import Foundation
import Synchronization

/// Measurement entry points for scripts/bench-*: hidden from --help, not for operators.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks used by scripts/bench-* (not for production use).",
        shouldDisplay: false,
        subcommands: [TransformSpeed.self, TransportSpeed.self, StoreSpeed.self]
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
            // Events are written into one reused request body, 1,000 to a batch, as
            // `BatchDeliverer` writes them (not each into an array of its own).
            var body = JSONWriter(capacity: 2 << 20)
            let clock = ContinuousClock()
            let wall = clock.now
            for _ in 0..<passes {
                for (line, id) in zip(lines, ids) {
                    if events % 1_000 == 0 { body.truncate(to: 0) }
                    let start = clock.now
                    let outcome = transformer.transform(payload: line, eventID: id, insertedAtMillis: now, nowMillis: now)
                    if case .event(let event, _) = consume outcome {
                        if body.count > 0 { body.raw(UInt8(ascii: ",")) }
                        let before = body.count
                        event.encode(into: &body)
                        totalBytes &+= body.count &- before
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

    struct TransportSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "transport",
            abstract: "POST fixed-size bodies to a sandbox as fast as possible; print JSON.")

        @Option(help: "Base URL of a sandbox (run it with --count-only).") var endpoint: String
        @Option(help: "The sandbox's access token.") var accessToken = "bench"
        @Option(help: "Approximate request body size in bytes.") var bodyBytes = 1_000
        @Option(help: "Requests in flight (one thread and one connection each).") var inFlight = 1
        @Option(help: "Seconds to run.") var seconds = 3.0

        func run() throws {
            let event = #"{"event":"Purchase","event_time":1795000000,"event_id":"bench-0000000","page":{"url":"https://shop.example/checkout"},"properties":{"currency":"EUR","value":12.5,"contents":[{"content_id":"SKU-1","quantity":1,"price":12.5}]}}"#
            let count = max(1, bodyBytes / (event.utf8.count + 1))
            let body = TrackRequest.body(sourceID: "BENCH", testEventCode: nil, events: Array(repeating: Array(event.utf8), count: count))
            let url = CurlTransport.Configuration.trackURL(base: endpoint)
            let results = Mutex<(requests: Int, failures: Int, connections: Int, latencies: [Double])>((0, 0, 0, []))
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            let clock = ContinuousClock()
            let start = clock.now
            let threads = (0..<inFlight).map { _ in
                Thread {
                    guard let transport = try? CurlTransport(configuration: .init(url: url)) else { return }
                    var latencies: [Double] = []
                    var failures = 0
                    while clock.now < deadline {
                        let t = clock.now
                        if case .delivered = ResponseClassifier.classify(transport.post(body: body, accessToken: accessToken)) {} else { failures += 1 }
                        latencies.append(Double((clock.now - t) / .microseconds(1)) / 1000)
                    }
                    let opened = transport.connectionsOpened
                    results.withLock { $0.requests += latencies.count; $0.failures += failures; $0.connections += opened; $0.latencies += latencies }
                }
            }
            threads.forEach { $0.start() }
            while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.01) }
            let elapsed = Double((clock.now - start) / .milliseconds(1)) / 1000
            let r = results.withLock { $0 }
            let sorted = r.latencies.sorted()
            func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : (sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000).rounded() / 1000 }
            print(#"{"body_bytes":\#(body.count),"events_per_request":\#(count),"in_flight":\#(inFlight),"requests":\#(r.requests),"failures":\#(r.failures),"#
                + #""connections":\#(r.connections),"posts_per_second":\#(Int(Double(r.requests) / elapsed)),"p50_ms":\#(percentile(0.5)),"p99_ms":\#(percentile(0.99))}"#)
        }
    }

    struct StoreSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "store",
            abstract: "The storage ceiling: claim 1,000 and settle them delivered until nothing is due, with no transform and no HTTP; print JSON.")

        @Option(help: "The outbox database.") var db: String
        @Option(help: "Rows per claim.") var batch = 1_000

        func run() throws {
            let store = try SQLiteOutboxStore(path: db)
            let clock = ContinuousClock()
            let start = clock.now
            var rows = 0
            while true {
                let now = currentMillis()
                let claimed = try store.claim(limit: batch, owner: "bench", leaseUntil: now + 60_000, now: now)
                if claimed.isEmpty { break }
                try store.settle(claimed.map { .delivered(id: $0.id, AttemptRecord(httpStatus: 200, tiktokCode: 0)) }, owner: "bench", now: now)
                rows += claimed.count
            }
            let seconds = Double((clock.now - start) / .milliseconds(1)) / 1000
            print(#"{"rows":\#(rows),"seconds":\#(seconds),"rows_per_second":\#(Int(Double(rows) / max(seconds, 0.001)))}"#)
        }
    }
}
