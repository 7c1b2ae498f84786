import ForwarderCore
import Foundation
import Logging

/// The access token, re-read when its file changes (checked at most once a second) or on
/// demand (SIGHUP). A file that becomes unreadable keeps the last good token.
public final class TokenSource: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    private var token: String
    private var signature: [Int]
    private var checkedAt: UnixMillis = 0
    private var version = 0
    private let logger: Logger

    public init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        token = try AccessTokenFile.read(path)
        signature = Self.signature(path)
    }

    private static func signature(_ path: String) -> [Int] {
        var s = stat()
        guard stat(path, &s) == 0 else { return [] }
        return [Int(s.st_ino), Int(s.st_size), Int(s.st_mtim.tv_sec), Int(s.st_mtim.tv_nsec)]
    }

    /// The current token (never log it).
    public func current(now: UnixMillis) -> String {
        lock.lock()
        defer { lock.unlock() }
        if now - checkedAt >= 1_000 {
            checkedAt = now
            if Self.signature(path) != signature { reloadLocked() }
        }
        return token
    }

    /// How many times the token changed; lets a paused daemon probe at once after a fix.
    public var changes: Int {
        lock.lock()
        defer { lock.unlock() }
        return version
    }

    public func reload() {
        lock.lock()
        defer { lock.unlock() }
        reloadLocked()
    }

    private func reloadLocked() {
        signature = Self.signature(path)
        do {
            let fresh = try AccessTokenFile.read(path)
            if fresh != token {
                token = fresh
                version += 1
                logger.notice("access token reloaded", metadata: ["file": "\(path)"])
            }
        } catch {
            logger.error("cannot reload the access token; keeping the previous one", metadata: ["error": "\(error)"])
        }
    }
}

/// systemd's notification protocol: datagrams to `$NOTIFY_SOCKET` (no libsystemd).
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    /// Half of `$WATCHDOG_USEC`, when systemd asked for keep-alives.
    public let watchdogIntervalMillis: Int64?

    public init(environment: [String: String]) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            watchdogIntervalMillis = max(usec / 2_000, 1)
        } else {
            watchdogIntervalMillis = nil
        }
    }

    public func notify(_ message: String) {
        guard let socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), sa, length)
            }
        }
    }
}

/// One line per message on standard error: `LEVEL message key=value …`, prefixed with the
/// syslog priority (`<3>`) when standard error is the journal (`$JOURNAL_STREAM`), which
/// then adds its own timestamp; otherwise an ISO 8601 timestamp leads.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let journal: Bool
    let label: String
    private static let lock = NSLock()

    public init(label: String, level: Logger.Level, environment: [String: String]) {
        self.label = label
        logLevel = level
        journal = environment["JOURNAL_STREAM"].map { !$0.isEmpty } ?? false
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = ""
        if journal {
            line += "<\(Self.priority(event.level))>"
        } else {
            line += Self.timestamp() + " "
        }
        // Messages and values may hold event ids, field names and a peer's text: control
        // characters are escaped so that none can forge a log line or drive a terminal.
        line += event.level.rawValue.uppercased() + " " + SafeText.escapingControls(event.message.description)
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in all.keys.sorted() {
            let value = SafeText.escapingControls("\(all[key]!)")
            let quoted = value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || value.isEmpty
            line += " \(SafeText.escapingControls(key))=" + (quoted ? "\"" + value.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : value)
        }
        line += "\n"
        Self.lock.lock()
        defer { Self.lock.unlock() }
        var bytes = Array(line.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes = bytes.dropFirst(n)
        }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tmValue = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tmValue)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmValue.tm_year + 1900, tmValue.tm_mon + 1, tmValue.tm_mday,
                      tmValue.tm_hour, tmValue.tm_min, tmValue.tm_sec, Int(ts.tv_nsec / 1_000_000))
    }
}
