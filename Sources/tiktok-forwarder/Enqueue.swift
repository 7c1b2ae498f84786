import ArgumentParser
import ForwarderCore
import ForwarderStore

struct Enqueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Insert NDJSON source events into the outbox, as a producer would.",
        discussion: """
            One Commanders Act event per line. The row's event_id is the line's top-level \
            `event_id`, else `context.event_id`; the line itself is the payload. An event_id \
            already in the outbox is ignored and counted as a duplicate. A line that is not a \
            JSON object or has no event id is reported with its number and skipped; the good \
            lines are still inserted.

            Exit status: 0 when every line was inserted or a duplicate, 1 when a line was \
            rejected, 2 on bad usage.
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Argument(help: ArgumentHelp("NDJSON file to read (default: standard input).", valueName: "file"))
    var file: String?

    @Option(help: "Rows per transaction.")
    var batchSize = 1_000

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let store = try database.openStore()
        let data = try readInput(file)
        var total = EnqueueResult()
        var rejected = 0
        var batch: [NewEvent] = []
        batch.reserveCapacity(batchSize)
        for (number, bytes) in NDJSONLine.lines(data) {
            let event: JSON
            do {
                event = try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in try JSONParser.parse(buffer) }
            } catch {
                printError("line \(number): rejected: not JSON (\(error.description))")
                rejected += 1
                continue
            }
            guard case .object = event else {
                printError("line \(number): rejected: not a JSON object")
                rejected += 1
                continue
            }
            guard let eventID = NDJSONLine.eventID(of: event) else {
                printError("line \(number): rejected: no event id (neither event_id nor context.event_id)")
                rejected += 1
                continue
            }
            batch.append(NewEvent(eventID: eventID, payload: String(decoding: bytes, as: UTF8.self)))
            if batch.count == batchSize {
                let result = try store.enqueue(batch, now: currentMillis())
                total.inserted += result.inserted
                total.duplicates += result.duplicates
                batch.removeAll(keepingCapacity: true)
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
}
