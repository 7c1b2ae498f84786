import ArgumentParser
import ForwarderStore

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the outbox schema.",
        discussion: """
            Applies the embedded migrations above the database's schema version (SQLite: PRAGMA \
            user_version; PostgreSQL: the table tiktok_forwarder_schema, under an advisory lock, so \
            daemons starting together migrate once). Running it twice changes nothing. A database \
            whose schema is newer than this binary is refused. `run` migrates at start too; back \
            the database up first (sqlite3 DB ".backup FILE"; pg_dump).
            """
    )

    @OptionGroup var database: DatabaseOptions

    func run() throws {
        if case .postgres(let uri) = try database.database() {
            let connection = try PostgresConnection(uri: uri)
            let before = try PostgresMigrator.version(connection)
            let applied = try PostgresMigrator.migrate(connection)
            print(applied.isEmpty ? "schema already at version \(before): nothing to do"
                                  : "migrated \(PostgresURI.display(uri)) from version \(before) to \(applied.last!)")
            return
        }
        let path = try database.path()
        let connection = try SQLiteConnection(path: path)
        let before = try connection.userVersion
        let applied = try Migrator.migrate(connection)
        if applied.isEmpty {
            print("schema already at version \(before): nothing to do")
        } else {
            print("migrated \(path) from version \(before) to \(applied.last!)")
        }
    }
}
