import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import Foundation
import Logging

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deliver the outbox to TikTok: the daemon.",
        discussion: """
            Claims due rows in batches (up to 1,000 events), maps and hashes them, and POSTs \
            them to TikTok's Events API with several requests in flight over reused connections. \
            Failed requests are retried with exponential backoff and full jitter (honouring \
            Retry-After); rate limiting also lowers the requests in flight. An event TikTok \
            rejects (40002) is dead-lettered alone and the rest of its batch is resent. A token \
            or pixel error (40001, 40105, HTTP 401/403) pauses delivery without consuming \
            attempts; so does a TLS certificate that does not verify. A probe retries every \
            --probe-interval, and a changed --access-token-file (or SIGHUP) is picked up \
            without a restart. Under systemd the token is a LoadCredential= copy taken at \
            start: rotate it by writing the file and running `systemctl restart \
            tiktok-forwarder` (graceful).

            With `destinations:` in the configuration file, one outbox feeds several pixels (or \
            an app, an offline or CRM event set): each row's destination column picks one (NULL: \
            the default), a request never mixes them, a pause stops only its destination, and a \
            row naming an unconfigured destination is dead-lettered (reason unknown_destination; \
            redrive it once configured).

            Rows whose processing crashed or hung the daemon are claimed afterwards in \
            halving groups, then alone, and a row is dead-lettered once claimed --max-attempts \
            times alone without a result: no row can crash-loop the queue. The daemon exits 1 if its database file is removed or \
            replaced while it runs, and writes no core dumps.

            On PostgreSQL (--db postgresql://user@host/dbname; the password from a password file: \
            PGPASSFILE, passfile= in the URI, or the systemd credential pgpass) any number of \
            daemons on any hosts share one outbox: claims skip each other's locked rows, settles \
            are fenced by the lease owner, a dead host's rows return when their lease expires, \
            and idle daemons are woken by the producers' commits (LISTEN/NOTIFY), polling once \
            a second.

            Configuration: the YAML file (--config or $TIKTOK_FORWARDER_CONFIG), then \
            TIKTOK_FORWARDER_* environment variables, then these flags. The access token is read \
            from --access-token-file / $TIKTOK_FORWARDER_ACCESS_TOKEN_FILE or from \
            $CREDENTIALS_DIRECTORY/access-token (systemd LoadCredential=); it is never accepted \
            on the command line and never logged.

            SIGTERM or SIGINT: stop claiming, finish requests in flight within \
            --shutdown-budget, return unsent rows to pending, exit 0. A second signal exits at \
            once (rows in flight return to pending at the next start). Under systemd \
            (Type=notify) it sends READY=1, STATUS=, WATCHDOG=1 and STOPPING=1.

            Logs go to standard error, one line per event worth attention.
            """
    )

    @OptionGroup var options: RunOptions
    @Flag(help: "Exit 0 once no row is pending or in flight (batch jobs, the demo); exit 3 if delivery pauses (token, pixel, TLS or endpoint error), with the reason in the log.") var untilDrained = false
    @Option(help: ArgumentHelp("Log level: debug, info, notice (default), warning, error (also log_level, TIKTOK_FORWARDER_LOG_LEVEL).", valueName: "level")) var logLevel: String?

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration: ForwarderConfiguration
        do {
            configuration = try options.resolve(environment: environment, logLevel: logLevel)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .notice
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level, environment: environment) }
        let logger = Logger(label: "tiktok-forwarder")
        let daemon = Daemon(configuration: configuration, logger: logger, environment: environment)
        let code: Int32
        do {
            code = try daemon.run(untilDrained: untilDrained)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// Every setting of the daemon as a flag; shared by `run` and `config check`.
struct RunOptions: ParsableArguments {
    @OptionGroup var database: DatabaseOptions

    @Option(help: ArgumentHelp("Events API base URL (default https://business-api.tiktok.com; http only to loopback).", valueName: "url"))
    var endpoint: String?
    @Option(help: ArgumentHelp("The TikTok pixel code (the event_source_id of web events).", valueName: "code"))
    var pixelCode: String?
    @Option(help: ArgumentHelp("The event_source_id for --event-source app, offline or crm: the TikTok App ID or the event set ID.", valueName: "id"))
    var eventSourceId: String?
    @Option(help: ArgumentHelp("File holding the access token (default: $CREDENTIALS_DIRECTORY/access-token).", valueName: "file"))
    var accessTokenFile: String?
    @Option(help: ArgumentHelp("Send test_event_code (events show in Events Manager's test tab).", valueName: "code"))
    var testEventCode: String?
    @Option(help: ArgumentHelp("TikTok's optional integration tag, sent as partner_name (none by default).", valueName: "name"))
    var partnerName: String?
    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default; a bare PORT binds 127.0.0.1).", valueName: "addr:port"))
    var metricsListen: String?

    @Option(help: ArgumentHelp("Events per request, 1…1000 (default 1000).", valueName: "n")) var maxBatchEvents: String?
    @Option(help: ArgumentHelp("Request body cap in bytes (default 4194304).", valueName: "bytes")) var maxBatchBytes: String?
    @Option(help: ArgumentHelp("Requests in flight at most (default 4). Each is a worker thread that keeps a core busy while a backlog drains against a fast endpoint: fewer than the cores leaves one to the producers.", valueName: "n")) var maxInFlight: String?
    @Option(help: ArgumentHelp("How soon new rows are picked up when idle (default 50ms).", valueName: "duration")) var linger: String?
    @Option(help: ArgumentHelp("Claim lease, ≥ 3 request timeouts (default 2m).", valueName: "duration")) var lease: String?
    @Option(help: ArgumentHelp("Whole-request timeout (default 30s).", valueName: "duration")) var requestTimeout: String?
    @Option(help: ArgumentHelp("Connect timeout (default 5s).", valueName: "duration")) var connectTimeout: String?
    @Option(help: ArgumentHelp("Attempts before a row is dead (default 30).", valueName: "n")) var maxAttempts: String?
    @Option(help: ArgumentHelp("Dead-letter rows still failing this long after insert (default 3d).", valueName: "duration")) var deliveryMaxAge: String?
    @Option(help: ArgumentHelp("First backoff ceiling (default 1s).", valueName: "duration")) var backoffBase: String?
    @Option(help: ArgumentHelp("Largest backoff ceiling (default 10m).", valueName: "duration")) var backoffMax: String?
    @Option(help: ArgumentHelp("While paused, retry with one event this often (default 30s).", valueName: "duration")) var probeInterval: String?
    @Option(help: ArgumentHelp("On SIGTERM, wait this long for requests in flight (default 35s).", valueName: "duration")) var shutdownBudget: String?
    @Option(help: ArgumentHelp("Delete delivered and skipped rows this long after they finish (default 7d).", valueName: "duration")) var retention: String?
    @Option(help: ArgumentHelp("The delivery workers' CPU priority: low (default: nice 10, producers get the cores first), idle (SCHED_IDLE: only cores nothing else wants) or normal.", valueName: "idle|low|normal"))
    var workerPriority: String?
    @Flag(help: "Keep each delivered event as sent (hashed, as TikTok got it) until retention, for `show EVENT_ID` (delivery.keep_sent).") var keepSent = false


    @OptionGroup(title: "Transform settings") var transformOptions: TransformOptions

    /// The effective configuration of file, environment and these flags.
    /// `logLevel` is `run`'s own `--log-level` (the top layer for `log_level`).
    func resolve(environment: [String: String], logLevel: String? = nil) throws -> ForwarderConfiguration {
        var layers = try layers()
        layers.set("log_level", logLevel, origin: "--log-level")
        return try ForwarderConfiguration.resolve(layers, environment: environment)
    }

    /// File, environment and these flags, unvalidated (for `config check` to show).
    func layers() throws -> ConfigLayers {
        var layers = try database.layers()
        let flags: [(String, String?, String)] = [
            ("endpoint", endpoint, "--endpoint"), ("pixel_code", pixelCode, "--pixel-code"), ("event_source_id", eventSourceId, "--event-source-id"),
            ("access_token_file", accessTokenFile, "--access-token-file"), ("test_event_code", testEventCode, "--test-event-code"),
            ("partner_name", partnerName, "--partner-name"),
            ("metrics_listen", metricsListen, "--metrics-listen"),
            ("delivery.max_batch_events", maxBatchEvents, "--max-batch-events"), ("delivery.max_batch_bytes", maxBatchBytes, "--max-batch-bytes"),
            ("delivery.max_in_flight", maxInFlight, "--max-in-flight"), ("delivery.linger", linger, "--linger"),
            ("delivery.lease", lease, "--lease"), ("delivery.request_timeout", requestTimeout, "--request-timeout"),
            ("delivery.connect_timeout", connectTimeout, "--connect-timeout"), ("delivery.max_attempts", maxAttempts, "--max-attempts"),
            ("delivery.max_age", deliveryMaxAge, "--delivery-max-age"), ("delivery.backoff_base", backoffBase, "--backoff-base"),
            ("delivery.backoff_max", backoffMax, "--backoff-max"), ("delivery.probe_interval", probeInterval, "--probe-interval"),
            ("delivery.shutdown_budget", shutdownBudget, "--shutdown-budget"), ("delivery.retention", retention, "--retention"),
            ("delivery.keep_sent", keepSent ? "true" : nil, "--keep-sent"),
            ("delivery.worker_priority", workerPriority, "--worker-priority"),
        ]
        for (key, value, flag) in flags { layers.set(key, value, origin: flag) }
        try transformOptions.add(to: &layers)
        return layers
    }
}
