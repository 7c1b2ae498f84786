import ForwarderCore
import Foundation

/// Where the outbox lives, from the `db` setting: a SQLite file (a path) or a PostgreSQL
/// database (a `postgresql://` connection URI, without a password).
public enum OutboxDatabase: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(uri: String)

    public init(_ setting: String) {
        self = PostgresURI.isPostgres(setting) ? .postgres(uri: setting) : .sqlite(path: setting)
    }

    public var isPostgres: Bool { if case .postgres = self { return true } else { return false } }

    /// What logs and messages show: the path, or the URI without user, password or options.
    public var display: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let uri): return PostgresURI.display(uri)
        }
    }

    /// Opens the outbox. `migrate`: bring the schema up to date; `createIfMissing`: create it
    /// in a PostgreSQL database that has none (a SQLite file is created by opening it: callers
    /// that must not create one check that it exists). `fullSync`: SQLite's fsync per commit,
    /// for producers (a PostgreSQL commit is durable with the server's default settings).
    public func open(migrate: Bool = true, createIfMissing: Bool = true, fullSync: Bool = false) throws -> any OutboxStore {
        switch self {
        case .sqlite(let path): return try SQLiteOutboxStore(path: path, migrate: migrate, fullSync: fullSync)
        case .postgres(let uri): return try PostgresOutboxStore(uri: uri, migrate: migrate, createIfMissing: createIfMissing)
        }
    }
}
