import ArgumentParser
import ForwarderCore
import ForwarderStore

struct Dead: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, redrive and purge dead letters.",
        discussion: """
            A dead row is one that can never be sent as it is: the reason is in last_error. \
            Look at it (`dead list`, `dead show`), fix the cause (the payload, the mapping, \
            the configuration), then `dead redrive` to send it again with fresh attempts.
            """,
        subcommands: [List.self, Show.self, Redrive.self, Purge.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, most recent first.")

        @OptionGroup var database: DatabaseOptions
        @Option(help: "At most this many rows.") var limit = 50
        @Flag(help: "Print NDJSON, one dead letter per line, with its payload.") var json = false

        func run() throws {
            let letters = try database.openStore().deadLetters(limit: limit)
            if json {
                for letter in letters { print(DeadReport.json(letter)) }
                return
            }
            if letters.isEmpty { print("no dead letters"); return }
            for l in letters {
                let code = [l.httpStatus.map { "HTTP \($0)" }, l.tiktokCode.map { "code \($0)" }].compactMap { $0 }.joined(separator: ", ")
                print(SafeText.escapingControls("#\(l.id)  \(l.eventID)  \(l.eventName ?? "?")  attempts \(l.attempts)\(code.isEmpty ? "" : "  " + code)  \(l.error ?? "")"))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter, with its payload.")

        @OptionGroup var database: DatabaseOptions
        @Argument(help: ArgumentHelp("Row id or event_id.", valueName: "id-or-event-id")) var key: String

        func run() throws {
            guard let letter = try database.openStore().deadLetter(key) else {
                printError("no dead letter with id or event_id '\(SafeText.escapingControls(key))'")
                throw ExitCode(1)
            }
            print(DeadReport.json(letter))
        }
    }

    struct Redrive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters again (back to pending, attempts reset).")

        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Every dead letter.") var all = false
        @Option(help: ArgumentHelp("Only rows dead for at most this long (e.g. 2h).", valueName: "duration")) var since: String?
        @Argument(help: ArgumentHelp("Row ids or event_ids.", valueName: "id")) var keys: [String] = []

        func validate() throws {
            let chosen = [all, since != nil, !keys.isEmpty].filter { $0 }.count
            guard chosen == 1 else { throw ValidationError("name what to redrive: --all, --since DURATION, or ids") }
        }

        func run() throws {
            let store = try database.openStore()
            let now = currentMillis()
            var count = 0
            if all {
                count = try store.redrive(.all, now: now)
            } else if let since {
                count = try store.redrive(.deadSince(now - parseDuration(since, option: "--since")), now: now)
            } else {
                let ids = keys.compactMap { Int64($0) }
                count += try store.redrive(.eventIDs(keys), now: now)
                count += try store.redrive(.ids(ids), now: now)
            }
            print("redriven \(count)")
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")

        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Every dead letter.") var all = false
        @Option(help: ArgumentHelp("Only rows dead for longer than this (e.g. 30d).", valueName: "duration")) var olderThan: String?

        func validate() throws {
            guard all != (olderThan != nil) else { throw ValidationError("name what to purge: --all or --older-than DURATION") }
        }

        func run() throws {
            let store = try database.openStore()
            let selection: DeadSelection = try olderThan.map { .deadBefore(currentMillis() - (try parseDuration($0, option: "--older-than"))) } ?? .all
            var total = 0
            while true {  // bounded chunks keep each write transaction short
                let n = try store.purgeDead(selection, limit: 5_000)
                total += n
                if n < 5_000 { break }
            }
            print("purged \(total)")
        }
    }
}

enum DeadReport {
    static func json(_ l: DeadLetter) -> String {
        var o = JSONObject()
        o.append("id", .number(String(l.id)))
        o.append("event_id", .string(l.eventID))
        o.append("event_name", l.eventName.map(JSON.string) ?? .null)
        o.append("attempts", .number(String(l.attempts)))
        o.append("last_http_status", l.httpStatus.map { .number(String($0)) } ?? .null)
        o.append("last_tiktok_code", l.tiktokCode.map { .number(String($0)) } ?? .null)
        o.append("last_error", l.error.map(JSON.string) ?? .null)
        o.append("created_at_ms", .number(String(l.createdAt)))
        o.append("dead_since_ms", .number(String(l.deadSince)))
        o.append("payload", (try? JSONParser.parse(l.payload)) ?? .string(l.payload))
        return JSONWriter.encode(.object(o))
    }
}
