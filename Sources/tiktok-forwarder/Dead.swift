import ArgumentParser
import ForwarderCore
import ForwarderStore
import Foundation

struct Dead: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, redrive and purge dead letters.",
        discussion: """
            A dead row is one that can never be sent as it is: the reason is in last_error, and \
            its code (transform, rejected, gave_up, too_old, ambiguous, crashed, \
            invalid_event_id, other) is what --reason selects. Look at them (`dead list`, \
            `dead show`), fix the cause (the payload, the mapping, the configuration), then \
            `dead redrive` to send them again with fresh attempts. Every selection can be tried \
            first with --dry-run.
            """,
        subcommands: [List.self, Show.self, Redrive.self, Purge.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, most recent first, with the total and filters.")

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var filter: DeadFilterOptions
        @Option(help: "At most this many rows.") var limit = 50
        @Flag(help: "Print NDJSON, one dead letter per line, with its payload.") var json = false

        func run() throws {
            let store = try database.openStore()
            let total = try store.stats(now: currentMillis()).count(.dead)
            // Unfiltered, only the rows shown are read (each carries its payload); filters
            // that SQL cannot apply (reason, event name) read the dead rows and filter here.
            let matching = filter.isFiltering ? try filter.matching(store, now: currentMillis())
                : try store.deadLetters(since: nil, limit: max(limit, 0))
            let shown = matching.prefix(max(limit, 0))
            if json {
                for letter in shown { print(DeadReport.json(letter)) }
                return
            }
            let filtered = filter.isFiltering ? ", \(matching.count) matching" : ""
            let available = filter.isFiltering ? matching.count : total
            print("dead letters: \(total)\(filtered)\(shown.count < available ? ", showing \(shown.count) (--limit)" : "")")
            guard !shown.isEmpty else { return }
            print("ID        DEAD SINCE            EVENT             REASON            ATTEMPTS  EVENT_ID / LAST ERROR")
            for l in shown {
                let code = [l.httpStatus.map { "HTTP \($0)" }, l.tiktokCode.map { "code \($0)" }].compactMap { $0 }.joined(separator: ", ")
                let line = pad("#\(l.id)", 9) + " " + pad(isoTime(l.deadSince), 21) + " " + pad(l.eventName ?? "?", 17) + " "
                    + pad(DeadReason.of(error: l.error).rawValue, 17) + " " + pad("\(l.attempts)", 9) + " " + l.eventID
                    + "\n          " + (code.isEmpty ? "" : "[\(code)] ") + (l.error ?? "")
                print(SafeText.escapingControls(line).replacingOccurrences(of: "\\u{A}", with: "\n"))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter, with its payload (any row: `tiktok-forwarder show`).")

        @OptionGroup var database: DatabaseOptions
        @Argument(help: ArgumentHelp("Row id or event_id.", valueName: "id-or-event-id")) var key: String

        func run() throws {
            guard let letter = try database.openStore().deadLetter(key) else {
                printError("no dead letter with id or event_id '\(SafeText.escapingControls(key))' (`tiktok-forwarder show` finds rows in any state)")
                throw ExitCode(1)
            }
            print(DeadReport.json(letter))
        }
    }

    struct Redrive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters again (back to pending, attempts reset): by ids, by filter, or --all.",
            discussion: "Ids that are not dead letters are reported and make the exit status 1 (the others are still redriven).")

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var selection: DeadSelectionOptions

        func run() throws {
            let store = try database.openStore()
            let (ids, missing) = try selection.resolve(store, now: currentMillis())
            if selection.dryRun {
                print("would redrive \(ids.count)")
            } else {
                var count = 0
                for chunk in stride(from: 0, to: ids.count, by: 5_000) {  // short write transactions
                    count += try store.redrive(.ids(Array(ids[chunk..<min(chunk + 5_000, ids.count)])), now: currentMillis())
                }
                print("redriven \(count)")
            }
            try reportMissing(missing)
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete dead letters for good: by ids, by filter, or --all.",
            discussion: "Ids that are not dead letters are reported and make the exit status 1 (the others are still purged).")

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var selection: DeadSelectionOptions

        func run() throws {
            let store = try database.openStore()
            let (ids, missing) = try selection.resolve(store, now: currentMillis())
            if selection.dryRun {
                print("would purge \(ids.count)")
            } else {
                var total = 0
                for chunk in stride(from: 0, to: ids.count, by: 5_000) {  // bounded chunks keep each write transaction short
                    total += try store.purgeDead(.ids(Array(ids[chunk..<min(chunk + 5_000, ids.count)])), limit: 5_000)
                }
                print("purged \(total)")
            }
            try reportMissing(missing)
        }
    }
}

/// `--since`, `--older-than`, `--reason`, `--event`: which dead letters.
struct DeadFilterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Only rows dead for at most this long (e.g. 2h).", valueName: "duration")) var since: String?
    @Option(help: ArgumentHelp("Only rows dead for longer than this (e.g. 30d).", valueName: "duration")) var olderThan: String?
    @Option(help: ArgumentHelp("Only this reason: \(DeadReason.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "code")) var reason: String?
    @Option(name: .customLong("event"), help: ArgumentHelp("Only this source event_name (e.g. purchase).", valueName: "name")) var eventName: String?

    var isFiltering: Bool { since != nil || olderThan != nil || reason != nil || eventName != nil }

    func validate() throws {
        if let reason, DeadReason(rawValue: reason) == nil {
            throw ValidationError("--reason: '\(reason)' is not one of \(DeadReason.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The dead letters these filters select, most recent first.
    func matching(_ store: OutboxStore, now: UnixMillis) throws -> [DeadLetter] {
        let after = try since.map { now - (try parseDuration($0, option: "--since")) }
        let before = try olderThan.map { now - (try parseDuration($0, option: "--older-than")) }
        return try store.deadLetters(since: after, limit: nil).filter { letter in
            (before.map { letter.deadSince < $0 } ?? true)
                && (reason.map { DeadReason.of(error: letter.error).rawValue == $0 } ?? true)
                && (eventName.map { letter.eventName == $0 } ?? true)
        }
    }
}

/// What `redrive` and `purge` act on: ids, filters, or --all; and --dry-run.
struct DeadSelectionOptions: ParsableArguments {
    @Flag(help: "Every dead letter.") var all = false
    @OptionGroup var filter: DeadFilterOptions
    @Flag(help: "Say how many rows would change, and change nothing.") var dryRun = false
    @Argument(help: ArgumentHelp("Row ids or event_ids.", valueName: "id")) var keys: [String] = []

    func validate() throws {
        let chosen = [all, filter.isFiltering, !keys.isEmpty].filter { $0 }.count
        guard chosen == 1 else {
            throw ValidationError("name the dead letters: ids, filters (--since, --older-than, --reason, --event), or --all")
        }
    }

    /// The selected dead rows' ids, and the keys that name no dead letter.
    func resolve(_ store: OutboxStore, now: UnixMillis) throws -> (ids: [Int64], missing: [String]) {
        if keys.isEmpty { return (try (all ? store.deadLetters(since: nil, limit: nil) : filter.matching(store, now: now)).map(\.id), []) }
        var ids: [Int64] = []
        var missing: [String] = []
        for key in keys {
            if let letter = try store.deadLetter(key) { ids.append(letter.id) } else { missing.append(key) }
        }
        return (Array(Set(ids)).sorted(), missing)
    }
}

private func reportMissing(_ missing: [String]) throws {
    guard !missing.isEmpty else { return }
    printError("not dead letters (no such row, or not dead): " + missing.map { SafeText.escapingControls($0) }.joined(separator: ", "))
    throw ExitCode(1)
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// `2026-12-01T20:14:05Z`.
func isoTime(_ millis: UnixMillis) -> String {
    var seconds = time_t(millis / 1000)
    var t = tm()
    gmtime_r(&seconds, &t)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
}

enum DeadReport {
    static func json(_ l: DeadLetter) -> String {
        var o = JSONObject()
        o.append("id", .number(String(l.id)))
        o.append("event_id", .string(l.eventID))
        o.append("event_name", l.eventName.map(JSON.string) ?? .null)
        o.append("reason", .string(DeadReason.of(error: l.error).rawValue))
        o.append("attempts", .number(String(l.attempts)))
        o.append("last_http_status", l.httpStatus.map { .number(String($0)) } ?? .null)
        o.append("last_tiktok_code", l.tiktokCode.map { .number(String($0)) } ?? .null)
        o.append("last_error", l.error.map(JSON.string) ?? .null)
        o.append("created_at_ms", .number(String(l.createdAt)))
        o.append("dead_since_ms", .number(String(l.deadSince)))
        o.append("dead_since", .string(isoTime(l.deadSince)))
        o.append("payload", (try? JSONParser.parse(l.payload)) ?? .string(l.payload))
        return JSONWriter.encode(.object(o))
    }
}
