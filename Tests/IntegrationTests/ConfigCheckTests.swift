import Foundation
import Testing
import TestSupport

@Suite("config check")
struct ConfigCheckTests {
    let directory = TemporaryDirectory()
    let token = "tok-\(UUID().uuidString)"

    func check(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        try "\(token)\n".write(toFile: directory.path + "/token", atomically: true, encoding: .utf8)
        return try ChildProcess.run(Repository.binary, ["config", "check"] + arguments, environment: environment, in: directory)
    }

    @Test("a good configuration from file, environment and flags is printed with origins, the token redacted")
    func good() throws {
        let file = directory.path + "/config.yaml"
        try "db: \(directory.path)/outbox.sqlite\npixel_code: FROMFILE\ndelivery:\n  linger: 20ms\n".write(toFile: file, atomically: true, encoding: .utf8)
        let result = try check(["--config", file, "--max-in-flight", "3"],
                               environment: ["TIKTOK_FORWARDER_ACCESS_TOKEN_FILE": directory.path + "/token", "TIKTOK_FORWARDER_PIXEL_CODE": "FROMENV"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("pixel_code: FROMENV    (TIKTOK_FORWARDER_PIXEL_CODE)"))
        #expect(result.stdout.contains("delivery.linger: 20ms    (\(file) (delivery.linger))"))
        #expect(result.stdout.contains("delivery.max_in_flight: 3    (--max-in-flight)"))
        #expect(result.stdout.contains("redacted") && result.stdout.contains("ok: `run` would start"))
        #expect(!result.stdout.contains(token) && !result.stderr.contains(token))
    }

    @Test("it fails clearly on what would stop the daemon", arguments: [
        (["--access-token-file", "TOKEN"], "no pixel code"),
        (["--pixel-code", "P"], "no access token"),
        (["--pixel-code", "P", "--access-token-file", "/nonexistent/token"], "cannot read the access token file: no such file (the path is not shown"),
        (["--pixel-code", "P", "--access-token-file", "TOKEN", "--endpoint", "http://business-api.tiktok.com"], "must use https"),
        (["--pixel-code", "P", "--access-token-file", "TOKEN", "--db", "/proc/outbox.sqlite"], "the database directory /proc is not writable"),
        (["--pixel-code", "P", "--access-token-file", "TOKEN", "--db", "/nonexistent/dir/outbox.sqlite"], "does not exist"),
    ])
    func refusals(arguments: [String], message: String) throws {
        var args = arguments.map { $0 == "TOKEN" ? directory.path + "/token" : $0 }
        if !args.contains("--db") { args += ["--db", directory.path + "/outbox.sqlite"] }
        let result = try check(args)
        #expect(result.status == 1)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(!result.stdout.contains(token) && !result.stderr.contains(token))
    }
}
