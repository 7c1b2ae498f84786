import ForwarderStore
import Foundation
import Testing
import TestSupport

@Suite("scripts/install.sh")
struct InstallTests {
    static func tree(_ root: String) throws -> [String] {
        let result = try ChildProcess.run("/usr/bin/find", [root, "-printf", "%P %s %T@ %m\\n"], in: TemporaryDirectory())
        return result.stdout.split(separator: "\n").map(String.init).sorted()
    }

    @Test("--prefix lays out a working installation; a second run changes nothing; --dry-run changes nothing")
    func install() throws {
        let directory = TemporaryDirectory()
        let prefix = directory.path + "/root"
        let script = Repository.root + "/scripts/install.sh"
        let first = try ChildProcess.run(script, ["--prefix", prefix, "--binary", Repository.binary], in: directory)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("Next steps"))
        for path in ["usr/local/bin/tiktok-forwarder", "etc/systemd/system/tiktok-forwarder.service", "etc/tiktok-forwarder/tiktok-forwarder.env",
                     "etc/tiktok-forwarder/config.example.yaml", "usr/local/share/doc/tiktok-forwarder/README.md",
                     "var/lib/tiktok-forwarder/outbox.sqlite"] {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + path), "missing \(path)")
        }
        let version = try ChildProcess.run(prefix + "/usr/local/bin/tiktok-forwarder", ["--version"], in: directory)
        #expect(version.status == 0 && !version.stdout.isEmpty)
        #expect(try SQLiteConnection(path: prefix + "/var/lib/tiktok-forwarder/outbox.sqlite", readOnly: true).userVersion == Migrator.latestVersion)
        let mode = try FileManager.default.attributesOfItem(atPath: prefix + "/var/lib/tiktok-forwarder")[.posixPermissions] as? Int
        #expect(mode == 0o2770, "setgid, group-writable state directory")
        let dbMode = try FileManager.default.attributesOfItem(atPath: prefix + "/var/lib/tiktok-forwarder/outbox.sqlite")[.posixPermissions] as? Int
        #expect(dbMode == 0o660, "producers in the group can write the database")
        let unit = try String(contentsOfFile: prefix + "/etc/systemd/system/tiktok-forwarder.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/tiktok-forwarder run"))

        let before = try Self.tree(prefix)
        let second = try ChildProcess.run(script, ["--prefix", prefix, "--binary", Repository.binary], in: directory)
        #expect(second.status == 0)
        #expect(!second.stdout.contains("installed ") && !second.stdout.contains("migrated"))
        #expect(try Self.tree(prefix) == before, "a second run changed the installation")

        // A database an older version left 0640 is repaired.
        #expect(chmod(prefix + "/var/lib/tiktok-forwarder/outbox.sqlite", 0o640) == 0)
        let repair = try ChildProcess.run(script, ["--prefix", prefix, "--binary", Repository.binary], in: directory)
        #expect(repair.status == 0 && repair.stdout.contains("group-writable (0660)"))
        let repaired = try FileManager.default.attributesOfItem(atPath: prefix + "/var/lib/tiktok-forwarder/outbox.sqlite")[.posixPermissions] as? Int
        #expect(repaired == 0o660)

        let empty = directory.path + "/dry"
        let dry = try ChildProcess.run(script, ["--prefix", empty, "--binary", Repository.binary, "--dry-run"], in: directory)
        #expect(dry.status == 0 && dry.stdout.contains("would run: install -D -m 0755"))
        #expect(!FileManager.default.fileExists(atPath: empty))
    }
}
