import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import ForwarderStore
import Foundation

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect the configuration.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the effective configuration of `run` and print it, the token redacted.",
            discussion: """
                Resolves the configuration exactly as `run` would (file, then TIKTOK_FORWARDER_* \
                environment, then flags), prints every setting with where it came from, and checks \
                what would stop the daemon at start: the pixel code, a readable token file, an https \
                endpoint (plain http only to loopback), a database whose directory is writable and \
                whose schema this binary understands. Exit status 0 when `run` would start, 1 with \
                the reason when it would not.
                """
        )

        @OptionGroup var options: RunOptions

        func run() throws {
            let environment = ProcessInfo.processInfo.environment
            let layers = try options.layers()
            var printed = Set<String>()
            for key in ConfigKeys.scalars + ConfigKeys.tables.sorted() + layers.values.keys.filter({ $0.hasPrefix("transform.events.") }).sorted() {
                guard printed.insert(key).inserted else { continue }
                guard let (value, origin) = layers.values[key] else { continue }
                let shown: String
                switch value {
                case .scalar(let text) where key == "access_token_file" && !FileManager.default.fileExists(atPath: text):
                    shown = "(not shown: no such file; it may be the token itself)"
                case .scalar(let text): shown = text
                case .table(let table): shown = table.keys.sorted().map { "\($0)=\(table[$0]!)" }.joined(separator: ", ")
                }
                print("\(key): \(shown)    (\(origin))")
            }
            let configuration: ForwarderConfiguration
            do {
                configuration = try ForwarderConfiguration.resolve(layers, environment: environment)
            } catch let error as ConfigurationError {
                print("")
                printError("config check: would not start: \(error.description)")
                throw ExitCode(1)
            }
            for (index, destination) in configuration.destinations.enumerated() {
                let token = try AccessTokenFile.read(destination.accessTokenFile)
                let role = index == 0 ? (configuration.destinations.count > 1 ? ", the default (rows whose destination is NULL)" : "") : ""
                print("destination \(destination.name)\(role): \(destination.summary); token file \(destination.accessTokenFile) (\(token.count) characters, redacted)"
                      + (destination.testEventCode.map { "; test_event_code \($0)" } ?? "") + (destination.partnerName.map { "; partner_name \($0)" } ?? "")
                      + "; preset \(destination.transform.preset.rawValue)")
            }
            if layers.scalar("endpoint") == nil { print("endpoint: \(configuration.endpoint)    (default)") }
            let d = configuration.delivery
            print("delivery: \(d.maxInFlight) in flight, batches of \(d.maxBatchEvents), request timeout \(Durations.format(millis: d.requestTimeoutMillis)), lease \(Durations.format(millis: d.leaseMillis)), \(d.retry.maxAttempts) attempts within \(Durations.format(millis: d.retry.maxAgeMillis)), shutdown budget \(Durations.format(millis: d.shutdownBudgetMillis)), retention \(Durations.format(millis: d.retentionMillis)), worker priority \(d.workerPriority.rawValue)")

            if let problem = Self.databaseProblem(configuration.databasePath) {
                printError("config check: would not start: \(problem)")
                throw ExitCode(1)
            }
            print("ok: `run` would start with this configuration")
        }

        /// Why the daemon could not open (or create) the database, if it could not.
        static func databaseProblem(_ path: String) -> String? {
            if case .postgres(let uri) = OutboxDatabase(path) {
                do {
                    let connection = try PostgresConnection(uri: uri)
                    let version = try PostgresMigrator.version(connection)
                    if version > PostgresMigrator.latestVersion {
                        return "the database \(PostgresURI.display(uri)) has schema version \(version), newer than this binary's \(PostgresMigrator.latestVersion): upgrade tiktok-forwarder"
                    }
                    print("database: PostgreSQL \(PostgresURI.display(uri)), schema version \(version)\(version == 0 ? " (created at start)" : "")")
                } catch {
                    return "\(error)"
                }
                return nil
            }
            let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                return "the database directory \(directory) does not exist"
            }
            // Try it rather than ask access(2): root passes permission checks yet cannot write
            // a read-only mount or /proc.
            let probe = directory + "/.tiktok-forwarder-check-\(getpid())"
            let fd = open(probe, O_CREAT | O_EXCL | O_WRONLY, 0o600)
            guard fd >= 0 else {
                return "the database directory \(directory) is not writable by this user (\(String(cString: strerror(errno)))); SQLite creates its -wal and -shm files there"
            }
            close(fd)
            unlink(probe)
            guard FileManager.default.fileExists(atPath: path) else { return nil }  // created at start
            guard access(path, R_OK | W_OK) == 0 else { return "the database \(path) is not readable and writable by this user" }
            do {
                let connection = try SQLiteConnection(path: path, readOnly: true)
                let version = try connection.userVersion
                if version > Migrator.latestVersion {
                    return "the database \(path) has schema version \(version), newer than this binary's \(Migrator.latestVersion): upgrade tiktok-forwarder"
                }
            } catch {
                return "cannot open the database \(path): \(error)"
            }
            return nil
        }
    }
}
