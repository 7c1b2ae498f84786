import ArgumentParser
import ForwarderCore
import ForwarderDaemon
import ForwarderSandbox
import Foundation

struct Sandbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a local TikTok Events API 2.0 stand-in, for staging and tests.",
        discussion: """
            Serves POST /open_api/v1.3/event/track/ and checks what TikTok checks: the \
            Access-Token header (wrong or missing: code 40105), the JSON body, event_source, \
            event_source_id (its kind: a pixel code for web, a number for app, offline and crm), data \
            with 1..1000 events, and per event: event, event_time (integer seconds), event_id (a \
            string), hashed user fields (64 lowercase hex), ids as strings, currency on TikTok's \
            list, value a number, and each source's rules: page.url for web; ttp and ttclid only \
            for web; app.app_id, the ad object and device ids (IDFA uppercase, GAID lowercase, \
            att_status) only for app; standard names only for offline; custom names and \
            lead.lead_id for crm. Any failure answers \
            HTTP 200 with code 40002 and a message naming data.N.field, and records nothing: the \
            whole batch fails, as on TikTok.

            Accepted events are appended to --record as NDJSON, one line per event: \
            {"received_at": <unix ms>, "event_source": …, "event_source_id": …, "test_event_code": …|null, "event": {…}}. \
            Duplicates by TikTok's dedup key (pixel, event name, event_id) are counted. \
            GET /_sandbox/stats returns the counters as JSON; PUT /_sandbox/access-token replaces \
            the accepted tokens with those of its body, one per line (to simulate a revoked one).

            Faults are probabilities per request, reproducible with --seed. The first line of \
            standard output is `listening on HOST:PORT`. SIGTERM or SIGINT stops it cleanly.
            """
    )

    @Option(help: "Address to bind (loopback by default).") var host = "127.0.0.1"
    @Option(help: "Port; 0 picks a free one.") var port = 0
    @Option(help: "An access token to accept (repeatable, one per destination; a test value: a real token belongs in --access-token-file).") var accessToken: [String] = []
    @Option(help: ArgumentHelp("Read the token to accept from this file instead (keeps it out of the process list).", valueName: "file"))
    var accessTokenFile: String?
    @Option(help: ArgumentHelp("Append accepted events to this NDJSON file.", valueName: "file")) var record: String?
    @Flag(help: "Skip validation and recording; only count events (for benchmarks).") var countOnly = false
    @Option(help: "Seed of the fault generator.") var seed: UInt64 = 1
    @Option(help: "Probability of HTTP 500.") var failRate = 0.0
    @Option(help: "Probability of HTTP 200 with code 40100 (rate limited).") var rateLimitRate = 0.0
    @Option(name: .customLong("http429-rate"), help: "Probability of HTTP 429 with Retry-After: 1.") var http429Rate = 0.0
    @Option(help: "Probability of closing the connection without an answer, after reading the body.") var resetRate = 0.0
    @Option(help: "Probability of reading the body and never answering.") var timeoutRate = 0.0
    @Option(help: "Delay every answer by this many milliseconds.") var delayMs = 0
    @Option(help: ArgumentHelp("Fail any batch holding an event whose event_id starts with this, with 40002 naming its index.", valueName: "prefix"))
    var rejectEventIdPrefix: String?
    @Option(help: "Event-loop threads.") var threads = 1

    func validate() throws {
        for (name, rate) in [("--fail-rate", failRate), ("--rate-limit-rate", rateLimitRate), ("--http429-rate", http429Rate),
                             ("--reset-rate", resetRate), ("--timeout-rate", timeoutRate)] where !(0...1).contains(rate) {
            throw ValidationError("\(name) must be between 0 and 1")
        }
        guard failRate + rateLimitRate + http429Rate + resetRate + timeoutRate <= 1 else {
            throw ValidationError("the fault rates add up to more than 1")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard accessToken.isEmpty != (accessTokenFile == nil) else {
            throw ValidationError("give --access-token (repeatable) or --access-token-file, not both")
        }
    }

    func run() throws {
        let token: String
        if let accessTokenFile {
            do {
                token = try AccessTokenFile.read(accessTokenFile)
            } catch {
                throw ValidationError("\(error)")
            }
        } else {
            token = accessToken[0]
        }
        var config = SandboxServer.Configuration(accessToken: token)
        config.extraAccessTokens = Array(accessToken.dropFirst())
        config.host = host
        config.port = port
        config.recordPath = record
        config.countOnly = countOnly
        config.seed = seed
        config.failRate = failRate
        config.rateLimitRate = rateLimitRate
        config.http429Rate = http429Rate
        config.resetRate = resetRate
        config.timeoutRate = timeoutRate
        config.delayMillis = delayMs
        config.rejectEventIDPrefix = rejectEventIdPrefix
        config.threads = threads
        let server = try SandboxServer(configuration: config)
        print("listening on \(host):\(server.port)")
        fflush(nil)
        let stop = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        stop.wait()
        try server.close()
        printError("sandbox: stopped; \(server.stats.json)")
    }
}
