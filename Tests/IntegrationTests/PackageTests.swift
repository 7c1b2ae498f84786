import Foundation
import Testing
import TestSupport

/// The Debian package scripts/test builds (scripts/package-deb, from the self-contained binary).
@Suite("The Debian package", .enabled(if: ProcessInfo.processInfo.environment["FORWARDER_TEST_DEB"] != nil,
                                        "scripts/test builds the package and sets FORWARDER_TEST_DEB"))
struct PackageTests {
    static var deb: String { ProcessInfo.processInfo.environment["FORWARDER_TEST_DEB"] ?? "" }

    @Test("it holds the binary, the unit, the conffile, docs, the man page and completions")
    func contents() throws {
        let directory = TemporaryDirectory()
        let listing = try ChildProcess.run("/usr/bin/dpkg-deb", ["-c", Self.deb], in: directory)
        #expect(listing.status == 0)
        for path in ["./usr/bin/tiktok-forwarder", "./lib/systemd/system/tiktok-forwarder.service", "./etc/tiktok-forwarder/tiktok-forwarder.env",
                     "./usr/share/doc/tiktok-forwarder/README.md", "./usr/share/doc/tiktok-forwarder/events.md",
                     "./usr/share/doc/tiktok-forwarder/examples/config.yaml", "./usr/share/doc/tiktok-forwarder/copyright",
                     "./usr/share/man/man1/tiktok-forwarder.1.gz", "./usr/share/bash-completion/completions/tiktok-forwarder",
                     "./usr/share/zsh/vendor-completions/_tiktok-forwarder", "./usr/share/fish/vendor_completions.d/tiktok-forwarder.fish"] {
            #expect(listing.stdout.contains(" \(path)\n"), "missing \(path)")
        }
        #expect(listing.stdout.split(separator: "\n").allSatisfy { $0.contains(" root/root ") }, "every file owned by root")
        let control = try ChildProcess.run("/usr/bin/dpkg-deb", ["-f", Self.deb, "Package", "Version", "Depends"], in: directory).stdout
        #expect(control.contains("Package: tiktok-forwarder") && control.contains("libsqlite3-0") && control.contains("libcurl4") && control.contains("libpq5"))
        #expect(!control.contains("swift"), "no dependency on a Swift runtime")
        let info = directory.path + "/control"
        #expect(try ChildProcess.run("/usr/bin/dpkg-deb", ["-e", Self.deb, info], in: directory).status == 0)
        #expect(try String(contentsOfFile: info + "/conffiles", encoding: .utf8) == "/etc/tiktok-forwarder/tiktok-forwarder.env\n")
        let postinst = try String(contentsOfFile: info + "/postinst", encoding: .utf8)
        for step in ["addgroup --system tiktok-forwarder", "adduser --system", "install -d -m 2770 -o tiktok-forwarder -g tiktok-forwarder /var/lib/tiktok-forwarder",
                     "chmod 0660"] {
            #expect(postinst.contains(step), "postinst: \(step)")
        }
        #expect(access(info + "/postinst", X_OK) == 0)
    }

    @Test("its binary runs with the Swift toolchain hidden (an empty tmpfs over /opt/swift)")
    func selfContained() throws {
        let directory = TemporaryDirectory()
        let root = directory.path + "/root"
        #expect(try ChildProcess.run("/usr/bin/dpkg-deb", ["-x", Self.deb, root], in: directory).status == 0)
        let binary = root + "/usr/bin/tiktok-forwarder"
        let ldd = try ChildProcess.run("/usr/bin/ldd", [binary], in: directory).stdout
        #expect(!ldd.contains("libswift") && !ldd.contains("libFoundation") && !ldd.contains("/opt/swift"), "\(ldd)")
        let db = directory.path + "/outbox.sqlite"
        let script = """
            set -e
            mount -t tmpfs none /opt/swift
            [ -z "$(ls -A /opt/swift)" ]
            \(binary) --version
            \(binary) migrate --db \(db)
            echo '{"event_name":"purchase","event_id":"p1","url":"https://s.example/","user":{"email":"a@b.example"}}' | \(binary) transform
            \(binary) status --db \(db)
            """
        let run = try ChildProcess.run("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script], in: directory)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("CompletePayment") && run.stdout.contains("pending 0"), "\(run.stdout)")
    }

    @Test("the man page and completions were generated from the commands")
    func generatedDocs() throws {
        let directory = TemporaryDirectory()
        let root = directory.path + "/root"
        #expect(try ChildProcess.run("/usr/bin/dpkg-deb", ["-x", Self.deb, root], in: directory).status == 0)
        let page = try ChildProcess.run("/bin/sh", ["-c", "gzip -dc \(root)/usr/share/man/man1/tiktok-forwarder.1.gz"], in: directory).stdout
        #expect(page.contains(".Dt TIKTOK-FORWARDER 1") && page.contains("until-drained") && page.contains("redrive"))
        let bash = try String(contentsOfFile: root + "/usr/share/bash-completion/completions/tiktok-forwarder", encoding: .utf8)
        #expect(bash.contains("complete") && bash.contains("redrive"))
    }
}
