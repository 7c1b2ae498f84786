import ArgumentParser
import ForwarderCore
import ForwarderStore
import Foundation

/// `--db`, shared by every subcommand that opens the outbox.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Path of the SQLite outbox database (default: $TIKTOK_FORWARDER_DB).", valueName: "path"))
    var db: String?

    func path() throws -> String {
        if let db, !db.isEmpty { return db }
        if let env = ProcessInfo.processInfo.environment["TIKTOK_FORWARDER_DB"], !env.isEmpty { return env }
        throw ValidationError("no database: pass --db PATH or set TIKTOK_FORWARDER_DB")
    }

    /// Opens the outbox, migrating it to the latest schema.
    func openStore() throws -> SQLiteOutboxStore {
        try SQLiteOutboxStore(path: try path())
    }
}

/// Unix milliseconds now. The CLI is the only place besides the daemon's clock that reads it.
func currentMillis() -> UnixMillis {
    UnixMillis((Date().timeIntervalSince1970 * 1000).rounded())
}

/// Writes a line to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Reads all of a file, or standard input for `nil` or `-`.
func readInput(_ file: String?) throws -> [UInt8] {
    if let file, file != "-" {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read '\(file)': no such file, or not readable")
        }
        return [UInt8](data)
    }
    return [UInt8](FileHandle.standardInput.readDataToEndOfFile())
}

func parseDuration(_ text: String, option: String) throws -> Int64 {
    guard let millis = Durations.parseMillis(text) else {
        throw ValidationError("\(option): '\(text)' is not a duration (examples: 500ms, 90s, 15m, 24h, 7d)")
    }
    return millis
}
