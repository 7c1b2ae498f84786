import Foundation

/// The throw-away PostgreSQL server scripts/test starts (scripts/pg-cluster), named by
/// `$FORWARDER_TEST_PG`: a superuser's URI on loopback.
public enum TestPostgres {
    public struct Unavailable: Error, CustomStringConvertible {
        public init() {}
        public var description: String {
            "no PostgreSQL server for the tests: run scripts/test (it starts one), or start one with `scripts/pg-cluster start DIR` and export FORWARDER_TEST_PG=<the URI it prints>"
        }
    }

    public static var serverURI: String? {
        ProcessInfo.processInfo.environment["FORWARDER_TEST_PG"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A new, empty database on the test server, and its URI.
    public static func freshDatabase() throws -> String {
        guard let server = serverURI else { throw Unavailable() }
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try psql(server, "CREATE DATABASE \(name)")
        return uri(server, database: name)
    }

    /// `server` with its database replaced by `database`.
    public static func uri(_ server: String, database: String) -> String {
        var base = server
        if let query = base.firstIndex(of: "?") { base = String(base[..<query]) }
        let authority = base.range(of: "://")!.upperBound
        if let slash = base[authority...].firstIndex(of: "/") { base = String(base[..<slash]) }
        return base + "/" + database
    }

    /// Runs SQL through `psql` (stops at the first error) and returns its output (unaligned, tuples only).
    @discardableResult
    public static func psql(_ uri: String, _ sql: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        process.arguments = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PsqlError(message: String(decoding: errors, as: UTF8.self))
        }
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public struct PsqlError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "psql: \(message)" }
    }
}
