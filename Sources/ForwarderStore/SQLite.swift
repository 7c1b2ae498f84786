import Glibc
import CSQLite
import Synchronization
import Dispatch

/// Nanoseconds this process has held SQLite's write lock (inside `writeTransaction`, from
/// `BEGIN IMMEDIATE` to `COMMIT`), over every connection: producers wait while it is held,
/// so its share of wall time is the number that predicts their latency.
public let sqliteWriteLockNanoseconds = Atomic<Int64>(0)

/// A SQLite result code turned into an error. It carries the statement's SQL, never the
/// values bound to it (they may be payloads with personal data).
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var sql: String?

    public var description: String {
        var text = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
        if let sql { text += " — in: \(sql.split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.joined(separator: " "))" }
        return text
    }

    /// The database was locked for longer than the busy timeout.
    public var isBusy: Bool { code & 0xFF == SQLITE_BUSY || code & 0xFF == SQLITE_LOCKED }
}

/// One SQLite connection, owned by this object and closed in `deinit`.
///
/// Not thread-safe: the owner serialises access. Opened for sharing the file with other
/// processes: WAL, a busy timeout, and write transactions begun `IMMEDIATE` so that a
/// writer waits for the lock up front instead of failing half-way.
public final class SQLiteConnection {
    /// Process-wide SQLite settings, applied before the first connection initialises the
    /// library: no allocation statistics (they serialise every malloc on one mutex;
    /// measured ~8 % of `enqueue`'s CPU).
    private static let configureOnce: Void = { _ = csqlite_disable_memstatus() }()

    let handle: OpaquePointer
    private var cache: [String: SQLiteStatement] = [:]

    /// Opens (creating if needed) the database at `path`.
    /// - Parameter busyTimeoutMillis: how long a statement waits for another process's lock.
    /// - Parameter fullSync: fsync the WAL at every commit (`synchronous = FULL`): what a
    ///   producer needs, so an acknowledged insert survives a power loss.
    public init(path: String, busyTimeoutMillis: Int32 = 5_000, readOnly: Bool = false, fullSync: Bool = false) throws(SQLiteError) {
        _ = Self.configureOnce
        if !readOnly { Self.createGroupWritable(path) }
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw SQLiteError(code: rc, message: "cannot open database '\(path)': \(message)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        // Not sqlite3_busy_timeout: its handler sleeps 1, 2, 5, 10 … 100 ms between tries, so
        // against producers committing thousands of times a second a waiter keeps waking
        // after the lock was free and taken again (measured: insert → acknowledged p99 ~1 s
        // at 5,000 events/s). Polling every 0.25 ms keeps waits as short as the holder's
        // transaction; the total wait is still bounded by the timeout.
        let tries = Int(max(busyTimeoutMillis, 0)) * 4
        sqlite3_busy_handler(db, { context, count in
            guard Int(count) < Int(bitPattern: context) else { return 0 }
            usleep(250)
            return 1
        }, UnsafeMutableRawPointer(bitPattern: tries))
        if !readOnly {
            // A new database gets 16 KiB pages (the size must be chosen before WAL is on):
            // ~1.2 KB payloads then cost a quarter of the write syscalls, which measured
            // enqueue at ~57k rows/s against ~45k with 4 KiB pages (BENCHMARKS.md).
            let pages = try statement("PRAGMA page_count")
            let isNew = try pages.step() && pages.int64(0) == 0
            pages.reset()
            if isNew { try execute("PRAGMA page_size = 16384") }
            // WAL lets producers write while the daemon reads. The daemon uses NORMAL sync:
            // durable against process crashes, and a power loss can at worst forget a recent
            // claim or settle, which makes it resend (never lose) those events. Producers
            // (`enqueue`) use FULL.
            try execute("PRAGMA journal_mode = WAL")
            try execute(fullSync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
        }
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    /// The mode of a database file this project creates: producers (other users in the
    /// daemon's group) must write it. SQLite would create it 0644 minus the umask, and gives
    /// the `-wal` and `-shm` files the database file's mode, so the database is created
    /// here first and set to 0660 with `fchmod`, which the umask does not narrow.
    public static let fileMode: mode_t = 0o660

    private static func createGroupWritable(_ path: String) {
        guard path != ":memory:", !path.isEmpty, !path.hasPrefix("file:") else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
        guard fd >= 0 else { return }  // exists already (its mode is the operator's), or SQLite reports the error
        _ = fchmod(fd, fileMode)
        close(fd)
    }

    /// Runs one or more statements that bind nothing and return nothing of interest.
    public func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, message: message, sql: sql)
        }
    }

    /// Resets every cached statement. A statement stepped to a row but not to its end keeps
    /// a read snapshot open, and a later `BEGIN IMMEDIATE` on a snapshot that another process
    /// has since written past fails at once with SQLITE_BUSY, without waiting: so every
    /// operation ends with this.
    public func resetStatements() {
        for statement in cache.values { statement.reset() }
    }

    /// A prepared statement for `sql`, cached on this connection and reset for reuse.
    /// Call ``resetStatements()`` when done with it.
    public func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        let statement = try SQLiteStatement(connection: self, sql: sql)
        cache[sql] = statement
        return statement
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction: committed if it returns, rolled back
    /// if it throws. Keep it short: other writers wait while it runs. When this process has
    /// started ``SQLiteWriteThread/shared`` (the daemon does), it runs there while the caller
    /// waits.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        if let writer = SQLiteWriteThread.shared, !writer.isCurrent {
            return try writer.run { try self.writeTransaction(body) }
        }
        try execute("BEGIN IMMEDIATE")
        var held = timespec()
        clock_gettime(CLOCK_MONOTONIC, &held)
        defer {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let nanoseconds = Int64(now.tv_sec - held.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec - held.tv_nsec)
            sqliteWriteLockNanoseconds.add(max(0, nanoseconds), ordering: .relaxed)
        }
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Runs `body` in a read transaction: one consistent snapshot for several queries.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN DEFERRED")
        defer { try? execute("COMMIT") }
        return try body()
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    public var userVersion: Int {
        get throws(SQLiteError) {
            let s = try statement("PRAGMA user_version")
            defer { s.reset() }
            guard try s.step() else { return 0 }
            return Int(s.int64(0))
        }
    }
}

/// A prepared statement, finalized in `deinit`. Binding indexes start at 1, columns at 0.
public final class SQLiteStatement {
    private let handle: OpaquePointer
    private unowned let connection: SQLiteConnection
    let sql: String

    init(connection: SQLiteConnection, sql: String) throws(SQLiteError) {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw SQLiteError(code: rc, message: connection.lastMessage, sql: sql)
        }
        self.handle = statement
        self.connection = connection
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(handle)
    }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: Int64?) throws(SQLiteError) -> SQLiteStatement {
        let rc = value.map { sqlite3_bind_int64(handle, index, $0) } ?? sqlite3_bind_null(handle, index)
        try check(rc)
        return self
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: Int?) throws(SQLiteError) -> SQLiteStatement {
        try bind(index, value.map(Int64.init))
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: Double?) throws(SQLiteError) -> SQLiteStatement {
        let rc = value.map { sqlite3_bind_double(handle, index, $0) } ?? sqlite3_bind_null(handle, index)
        try check(rc)
        return self
    }

    @discardableResult
    public func bind(_ index: Int32, _ value: String?) throws(SQLiteError) -> SQLiteStatement {
        let rc = value.map { sqlite3_bind_text(handle, index, $0, -1, csqlite_transient()) } ?? sqlite3_bind_null(handle, index)
        try check(rc)
        return self
    }

    /// Steps once: `true` when a row is available, `false` when done.
    public func step() throws(SQLiteError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let rc:
            let error = SQLiteError(code: rc, message: connection.lastMessage, sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Steps to completion, for statements that return no rows.
    public func run() throws(SQLiteError) {
        while try step() {}
    }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    public func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }
    public func int(_ column: Int32) -> Int { Int(int64(column)) }
    public func optionalInt(_ column: Int32) -> Int? { optionalInt64(column).map(Int.init) }
    public func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : sqlite3_column_double(handle, column) }

    public func string(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    public func optionalString(_ column: Int32) -> String? { isNull(column) ? nil : string(column) }

    /// The column's bytes (text or blob) without going through `String`.
    public func bytes(_ column: Int32) -> [UInt8] {
        guard let pointer = sqlite3_column_blob(handle, column) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, column))
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private func check(_ rc: Int32) throws(SQLiteError) {
        guard rc == SQLITE_OK else { throw SQLiteError(code: rc, message: connection.lastMessage, sql: sql) }
    }
}

/// A thread that runs write transactions for other threads, at the priority of the thread
/// that started it.
///
/// Producers wait while any writer holds SQLite's write lock. The daemon's delivery workers
/// run at a low CPU priority, so that the producers' processes get the cores first; but a
/// worker holding the lock would then be preempted by anything of normal priority, and the
/// producers would wait for the lock instead. So the daemon starts one of these (before it
/// lowers the workers' priority), every write transaction in the process runs on it, and a
/// worker waits for its transaction to finish. SQLite lets one writer in at a time anyway, so
/// queueing them here costs no parallelism. (Measured in BENCHMARKS.md.)
public final class SQLiteWriteThread: @unchecked Sendable {
    private final class Job: @unchecked Sendable {
        /// Taken by the write thread and released before `done` is signalled: the caller's
        /// closure must not outlive its call (`withoutActuallyEscaping` checks).
        var body: (() -> Void)?
        let done = DispatchSemaphore(value: 0)
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    private static let installed = Mutex<SQLiteWriteThread?>(nil)

    /// The process's write thread, once ``startShared()`` has run.
    public static var shared: SQLiteWriteThread? { installed.withLock { $0 } }

    /// Starts the process's write thread (once), at the calling thread's priority.
    public static func startShared() throws {
        try installed.withLock { current in
            if current == nil { current = try SQLiteWriteThread() }
        }
    }

    private let queue = Mutex<[Job]>([])
    private let pending = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)
    private var thread = pthread_t()

    /// Starts a write thread; it lives as long as the process.
    init() throws {
        let context = Unmanaged.passRetained(self).toOpaque()
        var created = pthread_t()
        let status = pthread_create(&created, nil, { context in
            let writer = Unmanaged<SQLiteWriteThread>.fromOpaque(context!).takeRetainedValue()
            _ = glibcSetThreadName(pthread_self(), "sqlite-writer")
            writer.loop()
        }, context)
        guard status == 0 else {
            Unmanaged<SQLiteWriteThread>.fromOpaque(context).release()
            throw SQLiteError(code: SQLITE_ERROR, message: "could not start the SQLite write thread: \(String(validatingCString: strerror(status)) ?? "error \(status)")")
        }
        thread = created
        started.signal()
    }

    /// Whether the calling thread is this write thread (whose transactions run in place).
    var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    private func loop() -> Never {
        started.wait()  // `thread` is set
        while true {
            pending.wait()
            let job = queue.withLock { $0.removeFirst() }
            do {
                let body = job.body.take()!
                body()
            }
            job.done.signal()
        }
    }

    /// Runs `body` on this thread and waits for it; its error, if any, is rethrown here.
    func run<T>(_ body: () throws -> T) throws -> T {
        var result: Result<T, any Error>?
        withoutActuallyEscaping({ result = Result { try body() } }) { escapable in
            let job = Job(escapable)
            queue.withLock { $0.append(job) }
            pending.signal()
            job.done.wait()
        }
        return try result!.get()
    }
}

/// glibc's `pthread_setname_np` (a GNU extension the Glibc module does not export).
@_silgen_name("pthread_setname_np")
private func glibcSetThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
