import CLibPQ
import ForwarderCore
import Foundation

/// A PostgreSQL error. It carries the statement's SQL and the server's message, never the
/// values bound to it (they may be payloads with personal data) and never the connection
/// string's secrets.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// The SQLSTATE code (`40001`, `23505`, …) when the server sent one.
    public var sqlState: String?
    public var message: String
    public var sql: String?

    public var description: String {
        var text = "PostgreSQL error\(sqlState.map { " \($0)" } ?? ""): \(message)"
        if let sql { text += " — in: \(sql.split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.joined(separator: " ").prefix(300))" }
        return text
    }

    /// A serialization failure or deadlock: the transaction may simply be run again.
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
}

/// What a PostgreSQL connection string says, checked before connecting.
public enum PostgresURI {
    /// Whether `text` names a PostgreSQL database rather than a SQLite file.
    public static func isPostgres(_ text: String) -> Bool {
        text.hasPrefix("postgresql://") || text.hasPrefix("postgres://")
    }

    /// Refuses a connection string that carries a password (command lines, environments and
    /// configuration files are all readable back; libpq reads passwords from a passfile) or
    /// that libpq cannot parse. The message never repeats the string.
    public static func validate(_ uri: String) throws(PostgresError) {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(uri, &error) else {
            let message = error.map { String(cString: $0).trimmingWhitespace() } ?? "out of memory"
            if let error { PQfreemem(error) }
            throw PostgresError(message: "the PostgreSQL connection URI is not valid: \(redactingSecrets(message))")
        }
        defer { PQconninfoFree(options) }
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", option.pointee.val != nil {
                throw PostgresError(message: "the PostgreSQL connection URI carries a password: remove it and put it in a password file instead (PGPASSFILE, or passfile=PATH in the URI; under systemd, a credential: passfile=%d/pgpass)")
            }
            option += 1
        }
    }

    /// The URI without its user info and query (what logs and `status` show).
    public static func display(_ uri: String) -> String {
        guard let scheme = uri.range(of: "://") else { return "postgresql" }
        var rest = uri[scheme.upperBound...]
        if let at = rest.firstIndex(of: "@"), !rest[..<at].contains("/") { rest = rest[rest.index(after: at)...] }
        if let query = rest.firstIndex(of: "?") { rest = rest[..<query] }
        return "postgresql://" + rest
    }

    static func redactingSecrets(_ message: String) -> String {
        message.split(separator: " ").map { $0.contains("password") || $0.contains("://") ? "…" : String($0) }.joined(separator: " ")
    }
}

/// One libpq connection, owned by this object and closed in `deinit`.
///
/// Not thread-safe: the owner serialises access (like ``SQLiteConnection``). Statements are
/// prepared once per connection and cached by their SQL; parameters and results travel as
/// text. A connection that broke (server restart, network) is re-established by the next
/// statement, so a worker's error is one failed operation, never a dead worker.
public final class PostgresConnection {
    private var handle: OpaquePointer
    private var prepared: [String: String] = [:]
    private let uri: String

    public init(uri: String, applicationName: String = "tiktok-forwarder") throws(PostgresError) {
        try PostgresURI.validate(uri)
        self.uri = uri
        var keywords = ["dbname", "application_name", "client_encoding", "connect_timeout"]
        var values = [uri, applicationName, "UTF8", "10"]
        // Under systemd, the credential `pgpass` is the password file (LoadCredential=pgpass:…),
        // unless the URI or PGPASSFILE names one.
        let environment = ProcessInfo.processInfo.environment
        if let credentials = environment["CREDENTIALS_DIRECTORY"], environment["PGPASSFILE"] == nil, !uri.contains("passfile="),
           access(credentials + "/pgpass", R_OK) == 0 {
            keywords.append("passfile")
            values.append(credentials + "/pgpass")
        }
        let handle = Self.connect(keywords: keywords, values: values)
        guard let handle else { throw PostgresError(message: "cannot connect to PostgreSQL: out of memory") }
        self.handle = handle
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = Self.message(handle)
            PQfinish(handle)
            throw PostgresError(message: "cannot connect to PostgreSQL at \(PostgresURI.display(uri)): \(message)")
        }
        try execute("SET TIME ZONE 'UTC'")
    }

    deinit { PQfinish(handle) }

    /// `expand_dbname`: the first value is a whole connection string; the others override it.
    private static func connect(keywords: [String], values: [String]) -> OpaquePointer? {
        let k = keywords.map { strdup($0) }
        let v = values.map { strdup($0) }
        defer { (k + v).forEach { free($0) } }
        var kp: [UnsafePointer<CChar>?] = k.map { UnsafePointer($0) } + [nil]
        var vp: [UnsafePointer<CChar>?] = v.map { UnsafePointer($0) } + [nil]
        return PQconnectdbParams(&kp, &vp, 1)
    }

    private static func message(_ handle: OpaquePointer) -> String {
        PostgresURI.redactingSecrets(String(cString: PQerrorMessage(handle)).trimmingWhitespace())
    }

    /// Reconnects when the connection broke; prepared statements go with it.
    private func ensureConnected() throws(PostgresError) {
        guard PQstatus(handle) != CONNECTION_OK else { return }
        PQreset(handle)
        prepared = [:]
        guard PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError(message: "PostgreSQL connection lost and not re-established: \(Self.message(handle))")
        }
        try execute("SET TIME ZONE 'UTC'")
    }

    /// Runs `body` once more on a new connection when the connection turned out to be broken
    /// (the server restarted, failed over, or ended this session) and no transaction was open:
    /// libpq only notices a dropped connection when a statement fails. Inside a transaction
    /// the error stands (the transaction is gone; its caller runs it again).
    private func reconnectingOnce<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try ensureConnected()
        let outsideTransaction = PQtransactionStatus(handle) == PQTRANS_IDLE
        do {
            return try body()
        } catch {
            guard outsideTransaction, PQstatus(handle) != CONNECTION_OK else { throw error }
            try ensureConnected()
            return try body()
        }
    }

    /// Runs SQL without parameters (several statements allowed): migrations, BEGIN, COMMIT.
    public func execute(_ sql: String) throws(PostgresError) {
        try reconnectingOnce { () throws(PostgresError) in
            let result = PQexec(handle, sql)
            defer { PQclear(result) }
            try check(result, sql: sql)
        }
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …; `nil` is NULL), prepared once
    /// per connection.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> PostgresRows {
        try reconnectingOnce { () throws(PostgresError) in try run(sql, parameters) }
    }

    private func run(_ sql: String, _ parameters: [String?]) throws(PostgresError) -> PostgresRows {
        let name: String
        if let known = prepared[sql] {
            name = known
        } else {
            name = "s\(prepared.count)"
            let result = PQprepare(handle, name, sql, Int32(parameters.count), nil)
            defer { PQclear(result) }
            try check(result, sql: sql)
            prepared[sql] = name
        }
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
        let result = pointers.withUnsafeMutableBufferPointer { buffer in
            PQexecPrepared(handle, name, Int32(parameters.count), buffer.baseAddress, nil, nil, 0)
        }
        do { try check(result, sql: sql) } catch {
            PQclear(result)
            throw error  // a broken connection's prepared statements go at the reconnect
        }
        return PostgresRows(result!)
    }

    /// Runs `body` in a transaction (READ COMMITTED unless `isolation` says otherwise), rolled
    /// back when it throws. When the connection breaks under it (a server restart, a
    /// failover), or the server aborts it as a deadlock or serialization failure, the whole
    /// transaction runs once more (on a new connection if need be): every transaction
    /// of the store is safe to repeat (its updates are fenced by state and owner, so a repeat
    /// of one that did commit changes nothing), and a settle left undone would leave delivered
    /// rows in flight until their lease expires, and send them again.
    public func transaction<T>(isolation: String? = nil, _ body: () throws -> T) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try execute(isolation.map { "BEGIN ISOLATION LEVEL \($0)" } ?? "BEGIN")
                do {
                    let value = try body()
                    try execute("COMMIT")
                    return value
                } catch {
                    if PQstatus(handle) == CONNECTION_OK { try? execute("ROLLBACK") }
                    throw error
                }
            } catch {
                // Once more after a broken connection, or a deadlock or serialization failure
                // (the server rolled it back: two daemons settling and reclaiming the same rows).
                let retryable = (error as? PostgresError)?.isRetryable ?? false
                guard attempt == 1, PQstatus(handle) != CONNECTION_OK || retryable else { throw error }
            }
        }
    }

    private func check(_ result: OpaquePointer?, sql: String) throws(PostgresError) {
        guard let result else { throw PostgresError(message: Self.message(handle), sql: sql) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
            throw PostgresError(sqlState: state, message: primary ?? Self.message(handle), sql: sql)
        }
    }

    // MARK: LISTEN / NOTIFY

    /// The connection's socket, for `poll` while waiting for notifications.
    public var socket: Int32 { PQsocket(handle) }

    /// Reads what the server sent and returns the channels notified since the last call.
    /// Throws when the connection broke (the caller reconnects and listens again).
    public func notifications() throws(PostgresError) -> [String] {
        guard PQconsumeInput(handle) == 1 else {
            throw PostgresError(message: "PostgreSQL connection lost: \(Self.message(handle))")
        }
        var channels: [String] = []
        while let notice = PQnotifies(handle) {
            channels.append(String(cString: notice.pointee.relname))
            PQfreemem(notice)
        }
        return channels
    }
}

/// A query's result, as text; freed with the object.
public final class PostgresRows {
    private let result: OpaquePointer
    public let count: Int

    init(_ result: OpaquePointer) {
        self.result = result
        count = Int(PQntuples(result))
    }

    deinit { PQclear(result) }

    /// Rows changed by an INSERT, UPDATE or DELETE.
    public var changes: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }

    public func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(result, Int32(row), Int32(column)) == 1 }

    public func string(_ row: Int, _ column: Int) -> String {
        String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }

    public func optionalString(_ row: Int, _ column: Int) -> String? { isNull(row, column) ? nil : string(row, column) }

    public func bytes(_ row: Int, _ column: Int) -> [UInt8] {
        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
        guard length > 0, let value = PQgetvalue(result, Int32(row), Int32(column)) else { return [] }
        return value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    public func int64(_ row: Int, _ column: Int) -> Int64 { optionalInt64(row, column) ?? 0 }

    public func optionalInt64(_ row: Int, _ column: Int) -> Int64? {
        guard !isNull(row, column), let value = PQgetvalue(result, Int32(row), Int32(column)) else { return nil }
        return strtoll(value, nil, 10)
    }

    public func int(_ row: Int, _ column: Int) -> Int { Int(int64(row, column)) }
    public func optionalInt(_ row: Int, _ column: Int) -> Int? { optionalInt64(row, column).map { Int($0) } }
    public func optionalDouble(_ row: Int, _ column: Int) -> Double? {
        isNull(row, column) ? nil : Double(string(row, column))
    }
    public func bool(_ row: Int, _ column: Int) -> Bool { string(row, column) == "t" }
}

/// A PostgreSQL array literal of integers (`{1,2,3}`), for `= ANY($1::bigint[])`.
func pgArray(_ values: [Int64]) -> String {
    "{" + values.map(String.init).joined(separator: ",") + "}"
}

/// A PostgreSQL array literal of integers, `NULL` for `nil`.
func pgArray(_ values: [Int?]) -> String {
    "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
}

func pgArray(_ values: [Bool]) -> String {
    "{" + values.map { $0 ? "t" : "f" }.joined(separator: ",") + "}"
}

/// A PostgreSQL array literal of text, each element quoted.
func pgArray(_ values: [String]) -> String {
    pgArray(values.map { Optional($0) })
}

/// A PostgreSQL array literal of text, each element quoted, `NULL` for `nil`.
func pgArray(_ values: [String?]) -> String {
    var literal = "{"
    literal.reserveCapacity(values.reduce(2) { $0 + ($1?.utf8.count ?? 4) + 3 })
    for (i, value) in values.enumerated() {
        if i > 0 { literal += "," }
        guard let value else { literal += "NULL"; continue }
        literal += "\""
        for character in value.unicodeScalars {
            if character == "\"" || character == "\\" { literal.unicodeScalars.append("\\") }
            literal.unicodeScalars.append(character)
        }
        literal += "\""
    }
    return literal + "}"
}

/// An optional value as a text parameter.
func pgText<T: CustomStringConvertible>(_ value: T?) -> String? { value.map(\.description) }
