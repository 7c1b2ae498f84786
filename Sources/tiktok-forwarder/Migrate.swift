import ArgumentParser
import ForwarderStore

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the outbox schema.",
        discussion: """
            Applies the embedded migrations above the database's PRAGMA user_version. Running it \
            twice changes nothing. A database whose schema is newer than this binary is refused. \
            `run` migrates at start too; back the database up first (sqlite3 DB ".backup FILE").
            """
    )

    @OptionGroup var database: DatabaseOptions

    func run() throws {
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
