import ArgumentParser
import ForwarderCore
import ForwarderStore
import Foundation

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the outbox at a glance: rows per state, backlog age, rate, errors.",
        discussion: """
            Fields: rows per state (pending, inflight, delivered, skipped, dead); the age of the \
            oldest row not yet final; rows delivered in the last minute; each running daemon (host, \
            pid, uptime, heartbeat: on PostgreSQL, the daemons of every host) and whether its delivery is paused (and why: with several destinations, one line per \
            paused destination); when rows name destinations, the rows not yet final and dead per \
            destination (NULL: the default one); the latest errors. `--json` has the same, with \
            `destinations` listing each destination's pending, inflight and dead rows and pause.
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "Print JSON for scripts.")
    var json = false

    @Flag(help: "Refresh every 2 seconds until interrupted.")
    var watch = false

    func run() throws {
        let store = try database.openStore()
        repeat {
            let now = currentMillis()
            let stats = try store.stats(now: now)
            let destinations = try store.destinationBacklogs()
            if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(json ? StatusReport.json(stats, destinations: destinations, now: now) : StatusReport.text(stats, destinations: destinations, now: now))
            if watch { Thread.sleep(forTimeInterval: 2) }
        } while watch
    }
}

/// How `status` renders the store's stats.
enum StatusReport {
    static func json(_ stats: OutboxStats, destinations: [DestinationBacklog] = [], now: UnixMillis) -> String {
        var counts = JSONObject()
        for state in RowState.allCases { counts.append(state.rawValue, .number(String(stats.count(state)))) }
        var root = JSONObject()
        root.append("counts", .object(counts))
        root.append("oldest_pending_age_seconds", stats.oldestPendingCreatedAt.map { .number(String(max(0, now.subtracting(saturating: $0)) / 1000)) } ?? .null)
        root.append("delivered_per_second", .number(String(Int(stats.deliveryRate.rounded()))))
        let paused = stats.daemons.compactMap(\.pausedReason)
        root.append("paused", .bool(!paused.isEmpty))
        root.append("paused_reason", paused.first.map(JSON.string) ?? .null)
        root.append("daemons", .array(stats.daemons.map { d in
            var o = JSONObject()
            o.append("owner", .string(d.owner))
            o.append("host", .string(d.host))
            o.append("pid", .number(String(d.pid)))
            o.append("uptime_seconds", .number(String(max(0, now.subtracting(saturating: d.startedAt)) / 1000)))
            o.append("heartbeat_age_seconds", .number(String(max(0, now.subtracting(saturating: d.heartbeatAt)) / 1000)))
            o.append("paused_reason", d.pausedReason.map(JSON.string) ?? .null)
            o.append("in_flight_limit", d.inFlightLimit.map { .number(String($0)) } ?? .null)
            return .object(o)
        }))
        root.append("destinations", .array(destinations.map { b in
            var o = JSONObject()
            o.append("destination", b.destination.map(JSON.string) ?? .null)
            o.append("pending", .number(String(b.pending)))
            o.append("inflight", .number(String(b.inflight)))
            o.append("dead", .number(String(b.dead)))
            let prefix = "destination '\(b.destination ?? "")': "
            let lines = stats.daemons.compactMap(\.pausedReason).flatMap { $0.split(separator: "\n").map(String.init) }
            let paused = b.destination == nil ? nil : lines.first { $0.hasPrefix(prefix) }
            o.append("paused_reason", paused.map(JSON.string) ?? .null)
            return .object(o)
        }))
        root.append("recent_errors", .array(stats.recentErrors.map { e in
            var o = JSONObject()
            o.append("id", .number(String(e.id)))
            o.append("event_id", .string(e.eventID))
            o.append("state", .string(e.state.rawValue))
            o.append("http_status", e.httpStatus.map { .number(String($0)) } ?? .null)
            o.append("tiktok_code", e.tiktokCode.map { .number(String($0)) } ?? .null)
            o.append("error", .string(e.error))
            return .object(o)
        }))
        return JSONWriter.encode(.object(root))
    }

    static func text(_ stats: OutboxStats, destinations: [DestinationBacklog] = [], now: UnixMillis) -> String {
        var lines: [String] = []
        let states = RowState.allCases.map { "\($0.rawValue) \(stats.count($0))" }.joined(separator: "   ")
        lines.append("rows:      \(states)")
        let age = stats.oldestPendingCreatedAt.map { Durations.format(millis: max(0, now.subtracting(saturating: $0))) } ?? "none pending"
        lines.append("backlog:   oldest pending \(age)")
        lines.append("rate:      \(Int(stats.deliveryRate.rounded()))/s delivered over the last minute" + (stats.daemons.isEmpty ? " (no daemon running)" : ""))
        if stats.daemons.isEmpty {
            lines.append("daemon:    none running")
        }
        for daemon in stats.daemons {
            // With several destinations, one line per paused one ("destination 'x': reason").
            let state = daemon.pausedReason.map { $0.split(separator: "\n").map { "PAUSED: \(SafeText.escapingControls(String($0)))" }.joined(separator: "\n           ") }
                ?? "delivering, \(daemon.inFlightLimit.map { "\($0)" } ?? "?") requests in flight at most"
            let silence = max(0, now.subtracting(saturating: daemon.heartbeatAt))
            let heartbeat = silence > 30_000
                ? "NO HEARTBEAT for \(Durations.format(millis: silence)): is it still running?"
                : "heartbeat \(Durations.format(millis: silence)) ago"
            lines.append("daemon:    \(SafeText.escapingControls(daemon.host)) pid \(daemon.pid), up \(Durations.format(millis: max(0, now.subtracting(saturating: daemon.startedAt)))), \(heartbeat)")
            lines.append("           \(state)")
        }
        if destinations.contains(where: { $0.destination != nil }) {
            lines.append("by destination (rows not yet final, and dead):")
            let width = destinations.map { ($0.destination ?? "(default: NULL)").count }.max() ?? 0
            for b in destinations {
                let name = SafeText.escapingControls(b.destination ?? "(default: NULL)")
                lines.append("  \(name.padding(toLength: max(width, name.count), withPad: " ", startingAt: 0))   pending \(b.pending)   inflight \(b.inflight)   dead \(b.dead)")
            }
        }
        if !stats.recentErrors.isEmpty {
            lines.append("recent errors:")
            for e in stats.recentErrors {
                let code = [e.httpStatus.map { "HTTP \($0)" }, e.tiktokCode.map { "code \($0)" }].compactMap { $0 }.joined(separator: ", ")
                lines.append("  #\(e.id) \(SafeText.escapingControls(e.eventID)) [\(e.state.rawValue)\(code.isEmpty ? "" : ", " + code)] \(SafeText.escapingControls(e.error))")
            }
        }
        return lines.joined(separator: "\n")
    }
}
