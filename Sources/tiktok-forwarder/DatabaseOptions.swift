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

/// Reads all of a file, or standard input for `nil` or `-`, straight into one byte array.
func readInput(_ file: String?) throws -> [UInt8] {
    var fd: Int32 = 0
    if let file, file != "-" {
        fd = open(file, O_RDONLY)
        guard fd >= 0 else {
            throw ValidationError("cannot read '\(file)': \(String(cString: strerror(errno)))")
        }
    }
    defer { if fd != 0 { close(fd) } }
    var bytes: [UInt8] = []
    var chunk = 1 << 20
    while true {
        let count = bytes.count
        bytes.reserveCapacity(count + chunk)
        var readCount = 0
        bytes.append(contentsOf: repeatElement(0, count: chunk))
        readCount = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, chunk) }
        if readCount < 0 {
            if errno == EINTR { bytes.removeLast(chunk); continue }
            throw ValidationError("cannot read \(file ?? "standard input"): \(String(cString: strerror(errno)))")
        }
        bytes.removeLast(chunk - readCount)
        if readCount == 0 { return bytes }
        chunk = min(chunk * 2, 64 << 20)
    }
}

func parseDuration(_ text: String, option: String) throws -> Int64 {
    guard let millis = Durations.parseMillis(text) else {
        throw ValidationError("\(option): '\(text)' is not a duration (examples: 500ms, 90s, 15m, 24h, 7d)")
    }
    return millis
}
