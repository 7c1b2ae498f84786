import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import ForwarderStore
import Foundation

/// `--config` and `--db`, shared by every subcommand that opens the outbox.
///
/// Every setting resolves the same way: the configuration file (`--config` or
/// `$TIKTOK_FORWARDER_CONFIG`), then `TIKTOK_FORWARDER_*` environment variables, then flags.
struct DatabaseOptions: ParsableArguments {
    @Option(help: ArgumentHelp("YAML configuration file (default: $TIKTOK_FORWARDER_CONFIG); see tiktok-forwarder.example.yaml.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The outbox: a SQLite file's path, or a PostgreSQL connection URI (postgresql://user@host/dbname, no password: use a passfile) (default: db in the configuration file, or $TIKTOK_FORWARDER_DB).", valueName: "path|uri"))
    var db: String?

    /// The file and environment layers, with `--db` on top.
    func layers() throws -> ConfigLayers {
        let environment = ProcessInfo.processInfo.environment
        var layers = ConfigLayers()
        do {
            if let file = config ?? environment["TIKTOK_FORWARDER_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
                try layers.loadFile(file)
            }
            try layers.loadEnvironment(environment)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        layers.set("db", db.flatMap { $0.isEmpty ? nil : $0 }, origin: "--db")
        return layers
    }

    func path() throws -> String {
        guard let db = try layers().scalar("db")?.0 else {
            throw ValidationError("no database: pass --db PATH, set TIKTOK_FORWARDER_DB, or set db in the configuration file")
        }
        return db
    }

    /// The outbox the settings name: a SQLite file, or a PostgreSQL database (its URI checked).
    func database() throws -> OutboxDatabase {
        let database = OutboxDatabase(try path())
        if case .postgres(let uri) = database {
            do { try PostgresURI.validate(uri) } catch { throw ValidationError(error.message) }
        }
        return database
    }

    /// Opens an existing outbox, migrating it to the latest schema. Only `migrate` and `run`
    /// create one: a mistyped path must not silently become a new, empty outbox.
    func openStore(fullSync: Bool = false) throws -> any OutboxStore {
        let database = try database()
        if case .sqlite = database { _ = try existingPath() }
        return try database.open(createIfMissing: false, fullSync: fullSync)
    }

    /// The database path, which must exist (exit 1 with a clear message otherwise).
    func existingPath() throws -> String {
        let path = try path()
        guard FileManager.default.fileExists(atPath: path) else {
            printError("no outbox at \(SafeText.escapingControls(path)): check the path, or create it with `tiktok-forwarder migrate --db \(SafeText.escapingControls(path))` (the daemon also creates it at start)")
            throw ExitCode(1)
        }
        return path
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
    var size = stat()
    var bytes: [UInt8] = []
    if fstat(fd, &size) == 0, size.st_size > 0 { bytes.reserveCapacity(Int(size.st_size)) }
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 1)
    defer { scratch.deallocate() }
    while true {
        let count = read(fd, scratch.baseAddress!, scratch.count)
        if count == 0 { return bytes }
        if count < 0 {
            if errno == EINTR { continue }
            throw ValidationError("cannot read \(file ?? "standard input"): \(String(cString: strerror(errno)))")
        }
        bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
    }
}

func parseDuration(_ text: String, option: String) throws -> Int64 {
    guard let millis = Durations.parseMillis(text) else {
        throw ValidationError("\(option): '\(text)' is not a duration (examples: 500ms, 90s, 15m, 24h, 7d)")
    }
    return millis
}
