/// One schema step. Shipped migrations are never edited; new ones are appended.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String
}

public enum MigrationError: Error, CustomStringConvertible {
    case newerSchema(database: Int, binary: Int)

    public var description: String {
        switch self {
        case .newerSchema(let database, let binary):
            return "the database schema is at version \(database), newer than this binary knows (\(binary)): "
                + "upgrade tiktok-forwarder, or point it at another database"
        }
    }
}

/// Brings a database to the latest schema, recorded in `PRAGMA user_version`.
public enum Migrator {
    /// The version the embedded migrations lead to.
    public static var latestVersion: Int { embeddedMigrations.last?.version ?? 0 }

    /// Applies every migration above the database's version, each in its own `IMMEDIATE`
    /// transaction (so two processes migrating at once do not both apply one).
    /// - Returns: the versions applied; empty when the database was already current.
    @discardableResult
    public static func migrate(_ connection: SQLiteConnection, migrations: [Migration] = embeddedMigrations) throws -> [Int] {
        let latest = migrations.last?.version ?? 0
        var applied: [Int] = []
        for migration in migrations {
            let didApply = try connection.writeTransaction { () throws -> Bool in
                let current = try connection.userVersion
                if current > latest { throw MigrationError.newerSchema(database: current, binary: latest) }
                guard current < migration.version else { return false }
                try connection.execute(migration.sql)
                try connection.execute("PRAGMA user_version = \(migration.version)")
                return true
            }
            if didApply { applied.append(migration.version) }
        }
        if migrations.isEmpty || applied.isEmpty {
            let current = try connection.userVersion
            if current > latest { throw MigrationError.newerSchema(database: current, binary: latest) }
        }
        return applied
    }
}
