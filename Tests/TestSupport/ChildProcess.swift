import Foundation

/// A real child process with its output captured to files (so a chatty child never blocks
/// on a full pipe). Killed with SIGKILL when released, if still running.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    /// A child that exits before reading its standard input must fail its test, not kill the
    /// test runner with SIGPIPE.
    private static let ignoreSIGPIPE: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()
    public let stdoutPath: String
    public let stderrPath: String

    /// Starts `executable` with `arguments`; `stdin` is written to its standard input and closed.
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                stdin: Data? = nil, in directory: TemporaryDirectory, name: String = UUID().uuidString) throws {
        _ = Self.ignoreSIGPIPE
        stdoutPath = directory.path + "/\(name).stdout"
        stderrPath = directory.path + "/\(name).stderr"
        FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try? input.fileHandleForWriting.close()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    public var pid: Int32 { process.processIdentifier }
    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits for the process to exit (at most `timeout` seconds, then SIGKILL) and returns its status.
    @discardableResult
    public func wait(timeout: Double = 120) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// Runs a process to completion.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           stdin: Data? = nil, in directory: TemporaryDirectory, timeout: Double = 120) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess(executable, arguments, environment: environment, stdin: stdin, in: directory)
        let status = child.wait(timeout: timeout)
        return (status, child.stdout, child.stderr)
    }
}

/// Paths in this checkout.
public enum Repository {
    /// The package root (found from this file's location).
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The built `tiktok-forwarder` binary: `$FORWARDER_TEST_BINARY` (set by scripts/test),
    /// else the debug build.
    public static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["FORWARDER_TEST_BINARY"], !path.isEmpty { return path }
        return root + "/.build/debug/tiktok-forwarder"
    }()

    public static func read(_ relativePath: String) throws -> String {
        try String(contentsOfFile: root + "/" + relativePath, encoding: .utf8)
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
public func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}
