import ForwarderCore
import ForwarderStore
import Foundation
import Testing
import TestSupport

/// Real uids: the daemon as an unprivileged service user, producers as other users in its
/// group, as the README sets it up (the state directory 2770 and setgid, UMask=0007).
@Suite("Users and permissions, with real uids", .serialized, .enabled(if: getuid() == 0, "needs root to run processes under other uids"))
struct PermissionsTests {
    static let daemonUID = 64_101, producerUID = 64_102, outsiderUID = 64_103, group = 64_100

    static func asUser(_ uid: Int, groups: [Int] = [], _ command: String) -> [String] {
        ["--reuid", "\(uid)", "--regid", "\(groups.first ?? uid)", groups.isEmpty ? "--clear-groups" : "--groups", groups.isEmpty ? nil : groups.map(String.init).joined(separator: ","),
         "/bin/sh", "-c", command].compactMap { $0 }
    }

    @Test("a producer in the group inserts while the daemon runs as the service user; its metrics scrape works; an outsider cannot write")
    func producerInTheGroup() throws {
        let rig = try Rig()
        let state = rig.directory.path + "/state"
        #expect(mkdir(state, 0o2770) == 0 && chown(state, uid_t(Self.daemonUID), gid_t(Self.group)) == 0 && chmod(state, 0o2770) == 0)
        #expect(chmod(rig.directory.path, 0o755) == 0)
        #expect(chown(rig.tokenFile, uid_t(Self.daemonUID), gid_t(Self.group)) == 0 && chmod(rig.tokenFile, 0o600) == 0)
        let db = state + "/outbox.sqlite"
        let bin = Repository.binary
        let daemon = try ChildProcess("/usr/bin/setpriv", Self.asUser(Self.daemonUID, groups: [Self.group], """
            umask 0007; exec \(bin) run --db \(db) --endpoint http://127.0.0.1:\(rig.port) --pixel-code PIXEL42 \
            --access-token-file \(rig.tokenFile) --linger 10ms --metrics-listen 127.0.0.1:0 --log-level info
            """), in: rig.directory, name: "daemon")
        let url = try #require(Rig.metricsURL(of: daemon, timeout: 15), "\(daemon.stderr)")
        var info = stat()
        #expect(stat(db, &info) == 0 && info.st_mode & 0o777 == 0o660 && info.st_gid == gid_t(Self.group), "the daemon created the outbox 0660 in the group")

        // Three producer processes under another uid, in the group, with the default umask.
        var producers: [ChildProcess] = []
        for p in 0..<3 {
            var sql = "PRAGMA busy_timeout = 5000;"
            for i in 0..<100 {
                sql += "INSERT INTO outbox (event_id, payload) VALUES ('p\(p)-\(i)', '{\"event_name\":\"purchase\",\"url\":\"https://s.example/\",\"user\":{\"email\":\"u\(i)@example.com\"}}');"
            }
            producers.append(try ChildProcess("/usr/bin/setpriv", Self.asUser(Self.producerUID, groups: [Self.producerUID, Self.group], "umask 0022; exec sqlite3 \(db) \"$0\"") + [sql],
                                              in: rig.directory, name: "producer-\(p)"))
        }
        for producer in producers { #expect(producer.wait(timeout: 60) == 0, "\(producer.stderr)") }
        #expect(try waitUntil(timeout: 30) { try rig.recorded().count == 300 })

        // The metrics endpoint answers a scrape of the unprivileged daemon.
        let scrape = try ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "5", url], in: rig.directory)
        #expect(scrape.status == 0 && scrape.stdout.contains("tiktok_forwarder_events_total"), "\(scrape.stderr)")

        // Someone outside the group can neither read nor write it.
        let outsider = try ChildProcess.run("/usr/bin/setpriv", Self.asUser(Self.outsiderUID, "exec sqlite3 \(db) \"INSERT INTO outbox (event_id, payload) VALUES ('x', '{}')\""), in: rig.directory)
        #expect(outsider.status != 0)
        for file in [db, db + "-wal", db + "-shm"] where FileManager.default.fileExists(atPath: file) {
            var s = stat()
            #expect(stat(file, &s) == 0 && s.st_mode & 0o777 == 0o660 && s.st_gid == gid_t(Self.group), "\(file) \(String(s.st_mode & 0o777, radix: 8))")
        }
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
    }
}
