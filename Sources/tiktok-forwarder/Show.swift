import ArgumentParser
import ForwarderCore
import ForwarderStore

/// `tiktok-forwarder show EVENT_ID`: one row in any state.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one outbox row in any state: state, attempts, times, last error, payload, and what was sent.",
        discussion: """
            For a delivered row, `sent` is the event exactly as TikTok received it (hashed) when \
            the daemon runs with delivery.keep_sent (--keep-sent); without it, `tiktok-forwarder \
            transform` shows what the current mapping makes of the payload. Exit 1 when no row \
            has that id or event_id.
            """)

    @OptionGroup var database: DatabaseOptions
    @Argument(help: ArgumentHelp("Row id or event_id.", valueName: "id-or-event-id")) var key: String

    func run() throws {
        guard let row = try database.openStore().row(key) else {
            printError("no row with id or event_id '\(SafeText.escapingControls(key))'")
            throw ExitCode(1)
        }
        var o = JSONObject()
        o.append("id", .number(String(row.id)))
        o.append("event_id", .string(row.eventID))
        o.append("state", .string(row.state.rawValue))
        o.append("attempts", .number(String(row.attempts)))
        o.append("created", .string(isoTime(row.createdAt)))
        if row.state == .pending { o.append("next_attempt", .string(isoTime(max(row.nextAttemptAt, row.createdAt)))) }
        if let finished = row.finishedAt { o.append("finished", .string(isoTime(finished))) }
        if let owner = row.leaseOwner { o.append("lease_owner", .string(owner)) }
        if let until = row.leaseExpiresAt { o.append("lease_expires", .string(isoTime(until))) }
        o.append("last_http_status", row.httpStatus.map { .number(String($0)) } ?? .null)
        o.append("last_tiktok_code", row.tiktokCode.map { .number(String($0)) } ?? .null)
        o.append("last_error", row.error.map(JSON.string) ?? .null)
        if row.state == .dead { o.append("reason", .string(DeadReason.of(error: row.error).rawValue)) }
        o.append("payload", (try? JSONParser.parse(row.payload)) ?? .string(row.payload))
        if row.state == .delivered {
            o.append("sent", row.sentEvent.map { (try? JSONParser.parse($0)) ?? .string($0) } ?? .string("not kept (run the daemon with delivery.keep_sent)"))
        }
        print(JSONWriter.encode(.object(o)))
    }
}
