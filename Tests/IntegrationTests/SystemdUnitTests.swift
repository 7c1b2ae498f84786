import Foundation
import Testing
import TestSupport

@Suite("The systemd unit")
struct SystemdUnitTests {
    static let unit = Repository.root + "/systemd/tiktok-forwarder.service"

    @Test("systemd-analyze verify reports nothing (with ExecStart pointing at the built binary)")
    func verify() throws {
        let directory = TemporaryDirectory()
        let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
            .replacingOccurrences(of: "/usr/bin/tiktok-forwarder", with: Repository.binary)
            // verify runs `man` for a man: link; the page is only there once the package is installed.
            .replacingOccurrences(of: "Documentation=man:tiktok-forwarder(1) ", with: "Documentation=")
        try text.write(toFile: directory.path + "/tiktok-forwarder.service", atomically: true, encoding: .utf8)
        let result = try ChildProcess.run("/usr/bin/systemd-analyze", ["verify", directory.path + "/tiktok-forwarder.service"], in: directory)
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result.stdout)\(result.stderr)")
    }

    @Test("systemd-analyze security rates the exposure 2.0 or lower")
    func security() throws {
        let directory = TemporaryDirectory()
        let result = try ChildProcess.run("/usr/bin/systemd-analyze", ["security", "--offline=yes", Self.unit], in: directory)
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let score = line.split(separator: ":").last.flatMap { $0.split(separator: " ").first }.flatMap { Double($0) }
        #expect(try #require(score) <= 2.0, "\(line)")
    }

    @Test("the unit is Type=notify with a watchdog, the token as a credential, and a stop timeout above the drain budget")
    func contract() throws {
        let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
        for line in ["Type=notify", "WatchdogSec=90s", "Restart=on-failure", "LoadCredential=access-token:", "StateDirectory=tiktok-forwarder",
                     "User=tiktok-forwarder", "Group=tiktok-forwarder", "ReadWritePaths=/var/lib/tiktok-forwarder", "CapabilityBoundingSet=\n", "LimitCORE=0", "UMask=0007"] {
            #expect(text.contains(line), "missing \(line)")
        }
        #expect(!text.contains("DynamicUser=yes"))
        // A reload cannot see a rotated LoadCredential= token (systemd copies it once, at
        // start): there is no ExecReload to pretend otherwise, and the unit says to restart.
        #expect(!text.contains("ExecReload"))
        #expect(text.contains("systemctl restart tiktok-forwarder"))
        #expect(!text.lowercased().contains("access_token=") && !text.contains("--access-token "))
    }
}
