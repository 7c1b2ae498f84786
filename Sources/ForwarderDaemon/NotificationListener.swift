import ForwarderCore
import ForwarderStore
import Foundation
import Logging
import Synchronization

/// Listens on a PostgreSQL channel (the outbox trigger notifies at each producer's commit) and
/// calls `onNotify`, so idle workers claim a new row within milliseconds instead of polling hard.
///
/// Its own thread and connection. While the connection is down it calls `onNotify` every
/// second (the workers poll as if notified) and reconnects; nothing depends on a notification
/// arriving, so a lost one delays a row by at most an idle poll.
final class NotificationListener: Sendable {
    private let stopped = Atomic<Bool>(false)

    init(uri: String, channel: String, logger: Logger, onNotify: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            var connection: PostgresConnection?
            var warned = false
            while !self.stopped.load(ordering: .relaxed) {
                do {
                    if connection == nil {
                        let fresh = try PostgresConnection(uri: uri, applicationName: "tiktok-forwarder listener")
                        try fresh.execute("LISTEN \(channel)")
                        connection = fresh
                        if warned { logger.notice("listening for new rows again") }
                        warned = false
                        onNotify()  // rows may have arrived while nobody listened
                    }
                    var poller = pollfd(fd: connection!.socket, events: Int16(POLLIN), revents: 0)
                    if poll(&poller, 1, 500) > 0, try !connection!.notifications().isEmpty { onNotify() }
                } catch {
                    if !warned {
                        logger.warning("not listening for new rows (idle workers poll every second instead): \(SafeText.escapingControls("\(error)"))")
                        warned = true
                    }
                    connection = nil
                    onNotify()
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        }
        thread.name = "listen"
        thread.start()
    }

    /// The thread ends within half a second.
    func stop() { stopped.store(true, ordering: .relaxed) }
}
