import ArgumentParser
import Foundation
import ForwarderCore
import ForwarderDaemon

@main
struct TikTokForwarder: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiktok-forwarder",
        abstract: "A durable outbox-to-TikTok-Events-API forwarder.",
        discussion: """
            Producers INSERT events into the outbox table (in a SQLite file, or in PostgreSQL for \
            producers and daemons on several hosts); `run` claims them, maps and \
            hashes them, and sends them to TikTok's Events API 2.0 — retrying, isolating bad \
            events, and dead-lettering (with the reason) what can never be sent.

            Settings come from a YAML file (--config or $TIKTOK_FORWARDER_CONFIG), then \
            TIKTOK_FORWARDER_* environment variables, then flags; the database is --db or \
            $TIKTOK_FORWARDER_DB.
            """,
        version: ForwarderVersion.string,
        subcommands: [
            Run.self, Config.self, Migrate.self, Enqueue.self, Status.self, Show.self, Dead.self, Transform.self, Sandbox.self, Bench.self,
        ]
    )

    /// Usage errors exit 2 (the Unix convention, and what scripts around `transform` and
    /// `enqueue` test for) instead of ArgumentParser's 64.
    static func main() async {
        if CommandLine.arguments.dropFirst().first == "run" {
            // Before anything else: a signal that arrives while the daemon starts is queued
            // for its supervisor instead of killing the process (SIGHUP's default action).
            SignalPipe.install([SIGTERM, SIGINT, SIGHUP])
            Daemon.disableCoreDumps()
        }
        // A parent may have spawned us with these blocked (the mask survives exec): the
        // daemon and the sandbox must hear them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, number) }
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}
