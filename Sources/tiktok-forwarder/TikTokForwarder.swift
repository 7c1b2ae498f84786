import ArgumentParser
import ForwarderCore

@main
struct TikTokForwarder: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiktok-forwarder",
        abstract: "A durable outbox-to-TikTok-Events-API forwarder.",
        discussion: """
            Producers INSERT events into the SQLite outbox table; `run` claims them, maps and \
            hashes them, and sends them to TikTok's Events API 2.0 — retrying, isolating bad \
            events, and dead-lettering (with the reason) what can never be sent.

            Settings come from a YAML file (--config or $TIKTOK_FORWARDER_CONFIG), then \
            TIKTOK_FORWARDER_* environment variables, then flags; the database is --db or \
            $TIKTOK_FORWARDER_DB.
            """,
        version: ForwarderVersion.string,
        subcommands: [
            Run.self, Migrate.self, Enqueue.self, Status.self, Dead.self, Transform.self, Sandbox.self, Bench.self,
        ]
    )
}
