import ArgumentParser
import ForwarderCore
import ForwarderStore
import Foundation

struct Enqueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Insert NDJSON source events into the outbox, as a producer would.",
        discussion: """
            One Commanders Act event per line. The row's event_id is the line's top-level \
            `event_id`, else `context.event_id`; the line itself is the payload. An event_id \
            already in the outbox is ignored and counted as a duplicate. A line that is not a \
            JSON object or has no event id is reported with its number and skipped; the good \
            lines are still inserted. --destination fills the rows' destination column (which \
            of the configured destinations gets them; default NULL, the default destination).

            Exit status: 0 when every line was inserted or a duplicate, 1 when a line was \
            rejected, 2 on bad usage.
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Argument(help: ArgumentHelp("NDJSON file to read (default: standard input).", valueName: "file"))
    var file: String?

    @Option(help: "Rows per transaction.")
    var batchSize = 1_000

    @Option(help: ArgumentHelp("The rows' destination column: the name of a configured destination (default NULL: the default one).", valueName: "name"))
    var destination: String?

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
        if let destination, destination.isEmpty { throw ValidationError("--destination: give a destination name") }
    }

    func run() throws {
        let store = try database.openStore(fullSync: true)  // a producer: an acknowledged insert must survive a power loss
        let data = try readInput(file)
        let lines = NDJSONLine.lines(data)
        // Validate every line first, on all cores; then insert in order, in batches.
        let checked = checkLines(lines, in: data)
        var total = EnqueueResult()
        var rejected = 0
        var batch: [NewEvent] = []
        batch.reserveCapacity(batchSize)
        for (line, check) in zip(lines, checked) {
            switch check {
            case .failure(let reason):
                printError("line \(line.number): rejected: \(reason.message)")
                rejected += 1
            case .success(let eventID):
                batch.append(NewEvent(eventID: eventID, payload: String(decoding: line.bytes, as: UTF8.self), destination: destination))
                if batch.count == batchSize {
                    let result = try store.enqueue(batch, now: currentMillis())
                    total.inserted += result.inserted
                    total.duplicates += result.duplicates
                    batch.removeAll(keepingCapacity: true)
                }
            }
        }
        if !batch.isEmpty {
            let result = try store.enqueue(batch, now: currentMillis())
            total.inserted += result.inserted
            total.duplicates += result.duplicates
        }
        print("inserted \(total.inserted), duplicates \(total.duplicates), rejected \(rejected)")
        if rejected > 0 { throw ExitCode(1) }
    }

    struct LineError: Error { var message: String }

    /// The event id of each line, or why the line is rejected.
    private func checkLines(_ lines: [(number: Int, bytes: ArraySlice<UInt8>)], in data: [UInt8]) -> [Result<String, LineError>] {
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, lines.count / 1_000))
        var results = [Result<String, LineError>](repeating: .failure(LineError(message: "")), count: lines.count)
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let range = (lines.count * chunk / chunks)..<(lines.count * (chunk + 1) / chunks)
                for i in range { out[i] = Self.check(lines[i].bytes) }
            }
        }
        return results
    }

    private static func check(_ bytes: ArraySlice<UInt8>) -> Result<String, LineError> {
        // Validates the whole line but builds only event_id and context (the rest of the
        // payload is the daemon's business): ~5× less work than a full parse.
        let found: (isObject: Bool, eventID: String?)
        do {
            found = try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in try JSONParser.eventID(buffer) }
        } catch {
            return .failure(LineError(message: "not JSON (\(error.description))"))
        }
        guard found.isObject else { return .failure(LineError(message: "not a JSON object")) }
        guard let eventID = found.eventID else {
            return .failure(LineError(message: "no event id (neither event_id nor context.event_id)"))
        }
        return .success(eventID)
    }
}
