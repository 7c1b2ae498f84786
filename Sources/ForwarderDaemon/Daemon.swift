import ForwarderCore
import ForwarderStore
import ForwarderTransport
import Foundation
import Logging
import Synchronization

/// `tiktok-forwarder run`: the delivery daemon.
///
/// Threads, not tasks: every worker blocks in SQLite and libcurl, so each runs on its own
/// thread with its own store connection, transport (one reused connection) and transformer.
/// The main thread supervises: signals (through a self-pipe, whichever thread receives
/// them), systemd notifications, the status row, lease reclaim, retention, shutdown.
public final class Daemon {
    public let configuration: ForwarderConfiguration
    let logger: Logger
    let environment: [String: String]
    let clock: WallClock
    public let owner: String
    let notifier: SystemdNotifier

    public init(configuration: ForwarderConfiguration, logger: Logger, environment: [String: String], clock: WallClock = SystemClock()) {
        self.configuration = configuration
        self.logger = logger
        self.environment = environment
        self.clock = clock
        owner = "\(Self.hostname()):\(getpid()):\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        notifier = SystemdNotifier(environment: environment)
    }

    /// Runs until SIGTERM / SIGINT (or, with `untilDrained`, until no row is pending or in
    /// flight). Returns the process exit status.
    public func run(untilDrained: Bool = false) throws -> Int32 {
        let settings = configuration.delivery
        SignalPipe.install([SIGTERM, SIGINT, SIGHUP])  // main did this first; a no-op then
        signal(SIGPIPE, SIG_IGN)
        Self.disableCoreDumps()
        // glibc gives each thread that allocates its own malloc arena; with a worker per
        // request in flight that fragmentation was most of the resident set at full drain.
        // Two arenas cost nothing measurable in throughput.
        _ = glibcMallopt(-8 /* M_ARENA_MAX */, 2)
        // Freed memory above 128 KiB at the top of a heap goes back to the system (glibc keeps
        // up to 128 KiB by default, but its threshold grows with the batches' MB-sized
        // buffers): measured −4 MB peak RSS at full drain, no change in speed.
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 128 << 10)

        let database = OutboxDatabase(configuration.databasePath)
        if case .sqlite(let path) = database, let version = try? SQLiteConnection(path: path, readOnly: true).userVersion, version < Migrator.latestVersion {
            // A migration may rebuild the outbox (0006: ~30 s per million rows on a small VM):
            // under systemd, extend the start timeout instead of being killed (and rolled back)
            // half-way, again and again.
            logger.notice("migrating the database", metadata: ["from": "\(version)", "to": "\(Migrator.latestVersion)"])
            notifier.notify("EXTEND_TIMEOUT_USEC=21600000000\nSTATUS=migrating the database from schema \(version) to \(Migrator.latestVersion) (a rebuild of the outbox takes ~30 s per million rows)")
        }
        // Every SQLite write transaction runs on one thread of the process's priority, so the
        // delivery workers can run at a lower one (see SQLiteWriteThread and WorkerPriority).
        if !database.isPostgres { try SQLiteWriteThread.startShared() }
        let store = try database.open()  // migrates
        // The supervisor's reads are small; SQLite's default cache is 2 MB.
        try (store as? SQLiteOutboxStore)?.setCacheSize(kibibytes: 512)
        // A replaced or removed SQLite file is noticed (see below); a PostgreSQL server is not a file.
        let databaseIdentity = database.isPostgres ? nil : DatabaseFile.identity(configuration.databasePath)
        if let postgres = store as? PostgresOutboxStore {
            // Leases compare the daemons' clocks with each other's: say so when this host's is off.
            let skew = try postgres.clockSkew(now: clock.nowMillis())
            if abs(skew) > 2_000 {
                logger.warning("this host's clock differs from the PostgreSQL server's: leases are compared across hosts, keep their clocks in sync (NTP)",
                               metadata: ["skew_ms": "\(skew)"])
            }
        }
        // One token source per token file (destinations may share one).
        var tokenFiles: [String: TokenSource] = [:]
        for destination in configuration.destinations where tokenFiles[destination.accessTokenFile] == nil {
            tokenFiles[destination.accessTokenFile] = try TokenSource(path: destination.accessTokenFile, logger: logger)
        }
        let tokens = configuration.destinations.map { tokenFiles[$0.accessTokenFile]! }
        let names = configuration.destinations.map(\.name)
        let startedAt = clock.nowMillis()
        try reclaimAtStart(store, now: startedAt)
        try store.recordDaemonStatus(DaemonStatus(owner: owner, pid: Int(getpid()), startedAt: startedAt, heartbeatAt: startedAt,
                                                  inFlightLimit: settings.maxInFlight))
        // On PostgreSQL idle workers hear of new rows (LISTEN): their polls, which still find
        // retries coming due, can be a second apart.
        let control = DeliveryControl(maxInFlight: settings.maxInFlight, lingerMillis: settings.lingerMillis, destinations: names.count,
                                      idlePollMillis: database.isPostgres ? max(settings.lingerMillis, 1_000) : settings.lingerMillis)
        var listener: NotificationListener?
        if case .postgres(let uri) = database {
            listener = NotificationListener(uri: uri, channel: "tiktok_forwarder_outbox", logger: logger) { control.rowsArrived() }
        }
        defer { listener?.stop() }
        let metrics = DaemonMetrics()
        try deadLetterUnknownDestinations(store, known: names, now: startedAt, metrics: metrics)
        var metricsServer: MetricsServer?
        if let listen = configuration.metricsListen {
            metricsServer = try MetricsServer(host: listen.host, port: listen.port, registry: metrics.registry)
            logger.notice("serving metrics", metadata: ["url": "http://\(listen.host):\(metricsServer!.port)/metrics"])
        }
        defer { metricsServer?.close() }
        let workers = Workers(count: settings.maxInFlight, now: startedAt)
        let trackURL = CurlTransport.Configuration.trackURL(base: configuration.endpoint)
        var started: Logger.Metadata = [
            "version": "\(ForwarderVersion.string)", "db": "\(database.display)", "endpoint": "\(trackURL)",
            "workers": "\(settings.maxInFlight)", "worker_priority": "\(settings.workerPriority.rawValue)",
        ]
        if configuration.destinations.count == 1, let only = configuration.destinations.first {
            if only.eventSource == .web, let pixel = only.pixelCode { started["pixel_code"] = "\(pixel)" } else { started["event_source"] = "\(only.summary)" }
            started["test_event_code"] = "\(only.testEventCode ?? "-")"
        } else {
            started["destinations"] = "\(configuration.destinations.map { "\($0.name) (\($0.summary)\($0.testEventCode.map { ", test \($0)" } ?? ""))" }.joined(separator: "; "))"
        }
        logger.notice("started", metadata: started)
        notifier.notify("READY=1\nSTATUS=started\nMAINPID=\(getpid())")

        var threads: [WorkerThread] = []
        for index in 0..<settings.maxInFlight {
            let configuration = configuration
            let owner = owner
            let logger = logger
            let clock = clock
            let thread: WorkerThread
            do {
                thread = try WorkerThread(name: "delivery-\(index)") {
                    defer {
                        workers.finished(index)
                        SignalPipe.wake()  // a stopping supervisor exits at once, not at its next tick
                    }
                    do {
                        try Self.work(index: index, configuration: configuration, owner: owner, control: control, workers: workers,
                                      tokens: tokens, clock: clock, logger: logger, metrics: metrics, trackURL: trackURL)
                    } catch {
                        logger.critical("delivery worker stopped: \(error)")
                        workers.failed()
                        control.stop()
                    }
                }
            } catch {
                // Stop the workers already started, and let them finish, before the error ends the process.
                control.stop()
                for running in threads { running.join() }
                throw error
            }
            threads.append(thread)
        }

        var stopDeadline: UnixMillis?
        var next = (watchdog: startedAt, status: startedAt, reclaim: startedAt + 15_000, purge: startedAt, drained: startedAt, metrics: startedAt,
                    identity: startedAt + 1_000, unknown: startedAt + 5_000, recount: startedAt + 30_000)
        var lastTokenVersions = tokens.map(\.changes)
        var lastCount: (at: Int64, unfinished: Int)?  // --until-drained: the last count of what is left
        var exitCode: Int32 = 0
        while true {
            // A tick every 200 ms; sooner when --until-drained is due to count again. Workers
            // that finish wake it (so a stop ends as soon as the last request does).
            var tick: Int64 = 200
            if untilDrained, stopDeadline == nil { tick = min(tick, max(1, next.drained.subtracting(saturating: clock.nowMillis()))) }
            let signals = SignalPipe.wait(millis: Int32(tick))
            let now = clock.nowMillis()
            for signal in signals where signal != SignalPipe.wakeByte {
                switch signal {
                case SIGHUP:
                    logger.notice("SIGHUP: reloading the access token")
                    for token in tokenFiles.values { token.reload() }
                default:
                    if stopDeadline == nil {
                        logger.notice("stopping: finishing requests in flight", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")", "budget": "\(Durations.format(millis: settings.shutdownBudgetMillis))"])
                        notifier.notify("STOPPING=1")
                        stopDeadline = now + settings.shutdownBudgetMillis
                        control.stop()
                    } else {
                        logger.warning("second signal: exiting now; rows still in flight return to pending at the next start or when their lease expires")
                        notifier.notify("STOPPING=1")
                        _exit(1)  // not exit(): atexit handlers would tear down libraries the workers are using
                    }
                }
            }
            let pausedReasons = control.pausedReasons
            for (d, token) in tokens.enumerated() {
                if pausedReasons[d] != nil {
                    _ = token.current(now: now)  // notices a corrected token file
                }
                if token.changes != lastTokenVersions[d] {
                    lastTokenVersions[d] = token.changes
                    if pausedReasons[d] != nil {
                        logger.notice("access token changed while paused: probing now", metadata: names.count > 1 ? ["destination": "\(names[d])"] : [:])
                        control.probeSoon(destination: d)
                    }
                }
            }
            if let interval = notifier.watchdogIntervalMillis, now >= next.watchdog {
                next.watchdog = now + interval
                if workers.allAlive(now: now, within: settings.requestTimeoutMillis + settings.lingerMillis + 10_000) {
                    notifier.notify("WATCHDOG=1")
                } else {
                    logger.error("a delivery worker has made no progress; withholding the watchdog keep-alive")
                }
            }
            // Checked at once when a worker has failed, too: a worker that opens or writes the
            // file after it was replaced fails first, and the replacement is the cause to report.
            if now >= next.identity || workers.anyFailed, stopDeadline == nil, !database.isPostgres {
                next.identity = now + 1_000
                let identity = DatabaseFile.identity(configuration.databasePath)
                if identity != databaseIdentity {
                    // Producers now write a file this daemon no longer has open: carrying on
                    // would leave their rows undelivered without a word.
                    logger.critical("the database file was \(identity == nil ? "removed" : "replaced") while running: stopping, so that the service manager restarts on the current file",
                                    metadata: ["db": "\(configuration.databasePath)"])
                    exitCode = 1
                    stopDeadline = now + settings.shutdownBudgetMillis
                    control.stop()
                }
            }
            metrics.update(limit: control.inFlightLimit, paused: Array(zip(names, pausedReasons)))
            metrics.update(writeLockNanoseconds: sqliteWriteLockNanoseconds.load(ordering: .relaxed))
            do {
                if metricsServer != nil, now >= next.metrics {
                    next.metrics = now + 5_000  // counts the fresh rows of each stream (an index range each)
                    metrics.update(backlog: try store.backlog(), now: now)
                }
                if now >= next.recount, stopDeadline == nil {
                    // Once, 30 s after start, off the start path: corrects the delivered and
                    // skipped counts after rows were deleted by hand (~0.3 s per 5 M rows, in a
                    // read transaction).
                    next.recount = .max
                    try store.recountFinished()
                }
                if now >= next.unknown, stopDeadline == nil {
                    next.unknown = now + 5_000
                    try deadLetterUnknownDestinations(store, known: names, now: now, metrics: metrics)
                }
                if now >= next.status {
                    next.status = now + 2_000
                    let paused = Self.pauseSummary(names: names, reasons: control.pausedReasons)
                    // One rate, measured here: STATUS= and `status` (through daemon_status) show the same.
                    let rate = control.deliveryRate(now: now)
                    try store.recordDaemonStatus(DaemonStatus(owner: owner, pid: Int(getpid()), startedAt: startedAt, heartbeatAt: now,
                                                              pausedReason: paused, inFlightLimit: control.inFlightLimit, deliveryRate: rate))
                    let due = try store.dueCount(now: now)
                    notifier.notify("STATUS=" + (paused.map { "PAUSED: \($0) — " } ?? "") + "\(due) pending, \(Int(rate.rounded())) events/s delivered (last minute)")
                }
                if now >= next.reclaim {
                    next.reclaim = now + max(1_000, min(15_000, settings.leaseMillis / 2))
                    let reclaimed = try store.reclaimExpiredLeases(now: now)
                    if reclaimed > 0 { logger.warning("reclaimed rows whose lease expired (a daemon stopped without settling them)", metadata: ["rows": "\(reclaimed)"]) }
                }
                if now >= next.purge, stopDeadline == nil {
                    next.purge = now + 60_000
                    var purged = 0
                    for _ in 0..<20 {
                        let n = try store.purgeFinished(finishedBefore: now - settings.retentionMillis, limit: 5_000)
                        purged += n
                        if n < 5_000 { break }
                    }
                    if purged > 0 { logger.info("purged finished rows past retention", metadata: ["rows": "\(purged)"]) }
                }
                if untilDrained, stopDeadline == nil, let reason = control.paused {
                    // A batch job must not hang on a pause that needs an operator.
                    logger.error("delivery paused: --until-drained gives up", metadata: ["reason": "\(reason)"])
                    exitCode = 3
                    stopDeadline = now + settings.shutdownBudgetMillis
                    control.stop()
                }
                if untilDrained, stopDeadline == nil, now >= next.drained {
                    // A count is an index scan (on PostgreSQL, of every unfinished row): with a
                    // large backlog, look again in about half the time it would take at the
                    // rate it fell since the last count (every 20 ms near the end), so the exit
                    // follows the drain closely and a large backlog is not counted over and over.
                    let unfinished = try store.unfinishedCount()
                    next.drained = now + Self.drainCheckDelay(unfinished: unfinished, now: now, previous: lastCount)
                    lastCount = (now, unfinished)
                    if unfinished == 0 {
                        logger.notice("outbox drained: stopping")
                        stopDeadline = now + settings.shutdownBudgetMillis
                        control.stop()
                    }
                }
            } catch {
                logger.error("database error in housekeeping (will retry): \(error)")
            }
            if workers.anyFailed, stopDeadline == nil {
                stopDeadline = now + settings.shutdownBudgetMillis
                exitCode = 1
            }
            if let deadline = stopDeadline {
                if workers.allFinished { break }
                if now >= deadline {
                    logger.warning("shutdown budget spent with requests still in flight; their rows return to pending at the next start")
                    break
                }
            }
        }
        try? store.removeDaemonStatus(owner: owner)
        let counters = control.snapshot
        logger.notice("stopped", metadata: ["delivered": "\(counters.delivered)", "skipped": "\(counters.skipped)", "dead": "\(counters.dead)",
                                            "requests": "\(counters.requests)", "retried": "\(counters.retried)"])
        if !workers.allFinished {
            // Workers are still blocked in requests: leave without running atexit handlers
            // under them. Their rows stay in flight and are reclaimed at the next start.
            _exit(exitCode)
        }
        // Finished workers may still be unwinding their threads (thread-local destructors,
        // OpenSSL's among them): the exit handlers run only once every thread is gone.
        for thread in threads { thread.join() }
        return exitCode
    }

    /// Milliseconds until `--until-drained` counts what is left again: half the time
    /// `unfinished` rows take at the rate the count fell since `previous` (50,000 events/s
    /// before there is a fall to measure), between 20 ms and 1 s. (A fixed 50,000/s guess
    /// looked again up to 400 ms after a 90,000/s drain had finished; near the end a count is
    /// an index range of a few rows.)
    static func drainCheckDelay(unfinished: Int, now: Int64, previous: (at: Int64, unfinished: Int)?) -> Int64 {
        var perSecond = 50_000.0
        if let previous, now > previous.at, previous.unfinished > unfinished {
            perSecond = (Double(previous.unfinished) - Double(unfinished)) * 1_000 / (Double(now) - Double(previous.at))
        }
        let halfTheRest = Double(max(unfinished, 0)) / perSecond * 500
        return Int64(min(1_000, max(20, halfTheRest)))
    }

    /// With several destinations, each paused one as `'name': reason`, one per line.
    static func pauseSummary(names: [String], reasons: [String?]) -> String? {
        let paused = zip(names, reasons).compactMap { name, reason in reason.map { (name, $0) } }
        guard !paused.isEmpty else { return nil }
        if names.count == 1 { return paused[0].1 }
        return paused.map { "destination '\($0.0)': \($0.1)" }.joined(separator: "\n")
    }

    /// Rows for a destination this configuration does not have are dead-lettered (with the
    /// name and the configured ones), never left pending unseen; `dead redrive` once it is added.
    private func deadLetterUnknownDestinations(_ store: any OutboxStore, known: [String], now: UnixMillis, metrics: DaemonMetrics) throws {
        for (name, rows) in try store.deadLetterUnknownDestinations(known: known, now: now).sorted(by: { $0.key < $1.key }) where rows > 0 {
            logger.warning("rows for an unconfigured destination dead-lettered", metadata: [
                "destination": "\(SafeText.escapingControls(String(name.prefix(100))))", "rows": "\(rows)", "configured": "\(known.joined(separator: ", "))",
            ])
            metrics.events("dead", reason: DeadReason.unknownDestination.rawValue, count: rows, destination: "(unknown)")
        }
    }

    /// At start, rows held by daemons on this host whose process is gone return to pending
    /// at once (their leases need not expire), and expired leases anywhere are reclaimed.
    private func reclaimAtStart(_ store: any OutboxStore, now: UnixMillis) throws {
        let host = Self.hostname()
        var gone: [String] = []
        for daemon in try store.daemonStatuses() {
            let parts = daemon.owner.split(separator: ":")
            guard parts.count == 3, String(parts[0]) == host, let pid = Int32(parts[1]), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { gone.append(daemon.owner) }
        }
        let reclaimed = try store.reclaimLeases(owners: gone, now: now) + store.reclaimExpiredLeases(now: now)
        for owner in gone { try store.removeDaemonStatus(owner: owner) }
        if reclaimed > 0 {
            logger.notice("reclaimed rows left in flight by a stopped daemon", metadata: ["rows": "\(reclaimed)"])
        }
    }

    private static func work(index: Int, configuration: ForwarderConfiguration, owner: String, control: DeliveryControl, workers: Workers,
                             tokens: [TokenSource], clock: WallClock, logger: Logger, metrics: DaemonMetrics, trackURL: String) throws {
        let settings = configuration.delivery
        if let failure = settings.workerPriority.applyToCurrentThread(), index == 0 {
            logger.warning("could not lower the delivery workers' CPU priority: they compete with the producers for the cores",
                           metadata: ["worker_priority": "\(settings.workerPriority.rawValue)", "error": "\(failure)"])
        }
        let store = try OutboxDatabase(configuration.databasePath).open(migrate: false)
        try (store as? SQLiteOutboxStore)?.setCacheSize(kibibytes: 512)  // measured: −4 MB resident at 4 in flight, same drain speed
        let transport = try CurlTransport(configuration: .init(url: trackURL, connectTimeoutMillis: Int(settings.connectTimeoutMillis),
                                                               totalTimeoutMillis: Int(settings.requestTimeoutMillis)))
        let lanes = configuration.destinations.enumerated().map { d, destination in
            let token = tokens[d]
            return BatchDeliverer.Lane(target: .init(destination, isDefault: d == 0), transformer: Transformer(settings: destination.transform),
                                       token: { token.current(now: clock.nowMillis()) })
        }
        let deliverer = BatchDeliverer(store: store, transport: transport, lanes: lanes, settings: settings, owner: owner, control: control,
                                       clock: clock, logger: logger, metrics: metrics)
        // Rows whose last claim ended without a result (see OutboxStore.claim) are taken by
        // worker 0 only, one group at a time: the crashes bisect a batch that holds a row
        // crashing the daemon, and never two suspect groups go down together.
        deliverer.takesSuspects = index == 0
        var hadWork = false
        var lastDestination = 0
        while true {
            let now = clock.nowMillis()
            workers.heartbeat(index, now: now)
            // Idle workers sleep in nextTurn (woken when a poll finds rows); the bound only
            // keeps the heartbeat fresh for the watchdog.
            let turn = control.nextTurn(now: now, waitMillis: 1_000, hadWork: hadWork, lastDestination: lastDestination)
            let d = turn.destination
            switch turn.kind {
            case .stop:
                return
            case .wait:
                continue
            case .deliver, .probe:
                let claimed: Int
                lastDestination = d
                do {
                    claimed = try deliverer.deliverOnce(destination: d, limit: turn.kind == .probe ? 1 : nil)
                } catch {
                    control.endTurn(turn)
                    logger.error("database error while delivering (will retry in 1 s): \(SafeText.escapingControls("\(error)"))")
                    hadWork = false
                    control.idle(millis: 1_000)
                    continue
                }
                control.endTurn(turn)
                hadWork = claimed > 0
                if turn.kind == .deliver { control.claimed(rows: claimed, destination: d) }
                if turn.kind == .probe, claimed == 0, let reason = control.paused(destination: d) {
                    control.pause(reason: reason, probeAt: clock.nowMillis().adding(saturating: settings.lingerMillis * 10), destination: d)
                }
            }
        }
    }

    /// A core dump would hold the access token and a batch of clear-text emails: none is
    /// written (systemd's LimitCORE=0 says the same for the unit).
    public static func disableCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)  // EPERM under a seccomp filter without @resources: LimitCORE=0 covers it
        _ = linuxPrctl(4 /* PR_SET_DUMPABLE */, 0, 0, 0, 0)
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(cString: buffer).replacingOccurrences(of: ":", with: "_")
    }
}

/// Why the daemon could not run (besides configuration and database errors).
struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A worker's thread, which the supervisor can join (`Foundation.Thread` cannot be joined):
/// it returns once the thread has exited, its thread-local destructors run.
final class WorkerThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private var thread = pthread_t()
    private var joined = false

    init(name: String, _ run: @escaping @Sendable () -> Void) throws {
        let named: @Sendable () -> Void = {
            // The thread's name in ps, top and gdb; the kernel keeps 15 bytes.
            var bytes = Array(name.utf8.prefix(15)) + [0]
            bytes.withUnsafeMutableBufferPointer { _ = linuxPrctl(15 /* PR_SET_NAME */, UInt(bitPattern: $0.baseAddress), 0, 0, 0) }
            run()
        }
        let body = Unmanaged.passRetained(Body(named)).toOpaque()
        let status = pthread_create(&thread, nil, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, body)
        guard status == 0 else {
            Unmanaged<Body>.fromOpaque(body).release()
            throw DaemonError("could not start a delivery thread: \(String(validatingCString: strerror(status)) ?? "error \(status)")")
        }
    }

    /// Waits for the thread to exit (once).
    func join() {
        guard !joined else { return }
        joined = true
        _ = pthread_join(thread, nil)
    }
}

/// Per-worker liveness, for the watchdog and shutdown.
final class Workers: Sendable {
    private let state: Mutex<(heartbeats: [UnixMillis], running: Int, failed: Bool)>

    init(count: Int, now: UnixMillis) {
        state = Mutex((Array(repeating: now, count: count), count, false))
    }

    func heartbeat(_ index: Int, now: UnixMillis) { state.withLock { $0.heartbeats[index] = now } }
    func finished(_ index: Int) { state.withLock { $0.running -= 1; $0.heartbeats[index] = .max } }
    func failed() { state.withLock { $0.failed = true } }
    var anyFailed: Bool { state.withLock { $0.failed } }
    var allFinished: Bool { state.withLock { $0.running == 0 } }
    func allAlive(now: UnixMillis, within: Int64) -> Bool {
        state.withLock { s in s.heartbeats.allSatisfy { $0 == .max || now - $0 <= within } }
    }
}

/// Signals through a self-pipe: the handler only writes the signal number (async-signal-safe);
/// the main thread reads it with `poll`, so it works whichever thread the kernel picks.
///
/// `main` installs it before anything else for `run`, so that a SIGHUP or SIGTERM in the
/// first milliseconds after start is queued for the supervisor instead of killing the process.
public enum SignalPipe {
    nonisolated(unsafe) static var fds: [Int32] = [-1, -1]
    nonisolated(unsafe) static var writeFD: Int32 = -1

    public static func install(_ signals: [Int32]) {
        guard writeFD < 0 else { return }
        var pair: [Int32] = [-1, -1]
        _ = pipe(&pair)
        for fd in pair {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        fds = pair
        writeFD = pair[1]
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(SignalPipe.writeFD, &byte, 1)
            }
            action.sa_flags = SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }

    /// What ``wake()`` writes: no signal has the number 0.
    static let wakeByte: Int32 = 0

    /// Ends the supervisor's current wait early (a worker has finished). Safe from any thread.
    static func wake() {
        var byte = UInt8(truncatingIfNeeded: wakeByte)
        _ = write(writeFD, &byte, 1)  // EAGAIN when full: a wake-up is pending anyway
    }

    /// Signals received (and ``wakeByte`` for each wake-up), waiting up to `millis` for the first.
    static func wait(millis: Int32) -> [Int32] {
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, millis) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = read(fds[0], &buffer, buffer.count)
        return n > 0 ? buffer[0..<n].map { Int32($0) } : []
    }
}

/// The database file's device and inode, or nil when it does not exist.
enum DatabaseFile {
    static func identity(_ path: String) -> [UInt64]? {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        return [UInt64(s.st_dev), UInt64(s.st_ino)]
    }
}

extension WorkerPriority {
    /// Sets the calling thread's CPU priority (on Linux both calls act on the calling thread
    /// only). Lowering needs no privilege. `nil`, or why it failed (e.g. a seccomp filter).
    func applyToCurrentThread() -> String? {
        let status: Int32
        switch self {
        case .normal:
            return nil
        case .low:
            status = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        case .idle:
            var parameters = sched_param(sched_priority: 0)
            status = sched_setscheduler(0, 5 /* SCHED_IDLE, not exported by the Glibc module */, &parameters)
        }
        return status == 0 ? nil : String(validatingCString: strerror(errno)) ?? "error \(errno)"
    }
}

/// Linux `prctl` (variadic in C, so declared here with the fixed arity the kernel takes).
@_silgen_name("prctl")
private func linuxPrctl(_ option: Int32, _ a2: UInt, _ a3: UInt, _ a4: UInt, _ a5: UInt) -> Int32

/// glibc's `mallopt` (declared in <malloc.h>, which the Glibc module does not export).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
