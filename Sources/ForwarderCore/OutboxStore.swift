/// Unix time in milliseconds: the unit of every time the store keeps.
public typealias UnixMillis = Int64

/// The outbox: the one seam between the daemon and its database.
///
/// Every operation takes the current time as a parameter; none reads a clock. Every state
/// change out of `inflight` is fenced by the lease owner, so a daemon whose lease expired
/// (and whose rows another daemon reclaimed) cannot overwrite the newer outcome.
/// Implementations: `SQLiteOutboxStore` and `PostgresOutboxStore` (production: one host, or
/// several sharing a PostgreSQL database) and ``InMemoryOutboxStore`` (unit tests); one
/// conformance suite runs against all three.
public protocol OutboxStore: AnyObject, Sendable {
    /// Inserts events as a producer would; an `event_id` already present is left alone.
    func enqueue(_ events: [NewEvent], now: UnixMillis) throws -> EnqueueResult

    /// Claims up to `limit` due pending rows, oldest due first: they become `inflight`
    /// under `owner` until `leaseUntil`, and each claim counts as an attempt (saturating,
    /// never overflowing).
    ///
    /// Suspects — due rows with unsettled claims (see ``ClaimedRow/unsettledClaims``) — come
    /// first when `suspects` is true (with `false` they are left for another claimer): a
    /// group of at most `limit >> unsettledClaims` of them with the same count, so a batch
    /// that crashed the daemon is bisected by the crashes themselves and a row that crashes
    /// it every time is alone after about log2(`limit`) of them. A group of more than one
    /// row is not counted as an attempt (its innocent rows keep their budget); a claim of a
    /// single suspect is. A daemon lets one worker take suspects, so that one suspect group
    /// is in flight at a time.
    ///
    /// `route` restricts the claim to one destination's rows (`nil`: any row). A request
    /// never mixes destinations, and a paused destination's rows are simply not claimed.
    func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool, route: Route?) throws -> [ClaimedRow]

    /// Dead-letters the pending rows whose `destination` names none of `known` (NULL is
    /// always known: the default destination's), with a reason naming it; `dead redrive`
    /// sends them again once it is configured. Returns the rows per unknown name.
    @discardableResult
    func deadLetterUnknownDestinations(known: [String], now: UnixMillis) throws -> [String: Int]

    /// Rows not yet final and dead rows per destination (NULL: the default), for `status`.
    func destinationBacklogs() throws -> [DestinationBacklog]

    /// Applies outcomes to rows `owner` holds, in one transaction. Returns how many rows
    /// changed; rows no longer held by `owner` are left as they are.
    @discardableResult
    func settle(_ settlements: [Settlement], owner: String, now: UnixMillis) throws -> Int

    /// Returns claimed rows to `pending` without consuming their attempt (shutdown).
    @discardableResult
    func release(ids: [Int64], owner: String, now: UnixMillis) throws -> Int

    /// Returns rows whose lease expired (a crashed daemon's) to `pending`. Their attempt
    /// stays counted and their unsettled claims grow by one, so a row that crashes the daemon
    /// every time is isolated by the next claims and still runs out of attempts.
    @discardableResult
    func reclaimExpiredLeases(now: UnixMillis) throws -> Int

    /// Returns the rows held by `owners` (daemons known to be gone) to `pending` at once,
    /// without waiting for their leases; like lease expiry, their attempt stays counted.
    @discardableResult
    func reclaimLeases(owners: [String], now: UnixMillis) throws -> Int

    /// Rows not yet final (pending or inflight): cheap, for `run --until-drained`.
    func unfinishedCount() throws -> Int

    /// Pending rows due by `now`: cheap, for the daemon's status line.
    func dueCount(now: UnixMillis) throws -> Int

    /// Rows not yet final and dead rows, without counting the (possibly huge) finished ones:
    /// for metrics, every few seconds.
    func backlog() throws -> Backlog

    /// Sends dead rows again: back to `pending` with their attempts reset.
    @discardableResult
    func redrive(_ selection: DeadSelection, now: UnixMillis) throws -> Int

    /// Deletes up to `limit` delivered or skipped rows finished before `finishedBefore`.
    @discardableResult
    func purgeFinished(finishedBefore: UnixMillis, limit: Int) throws -> Int

    /// Deletes up to `limit` dead rows.
    @discardableResult
    func purgeDead(_ selection: DeadSelection, limit: Int) throws -> Int

    /// Counts per state (finished rows from maintained counts: cheap however many are
    /// retained), the oldest unfinished row, the daemons' rate, recent errors, daemons.
    func stats(now: UnixMillis) throws -> OutboxStats

    /// Recounts the finished rows exactly (range counts of finished batches: ~0.3 s per 5 M
    /// rows, without the write lock), after rows may have been deleted by hand. The daemon
    /// calls it 30 s after it starts.
    func recountFinished() throws

    /// Dead rows, most recent first: those dead since `since` (all with `nil`), at most
    /// `limit` (all with `nil`).
    func deadLetters(since: UnixMillis?, limit: Int?) throws -> [DeadLetter]

    /// Any row, by row id or event_id, with what was sent for it if that was kept.
    func row(_ key: String) throws -> OutboxRow?

    /// One dead row, by row id or event_id.
    func deadLetter(_ key: String) throws -> DeadLetter?

    /// Records (or clears) a running daemon's status, for `status` in other processes.
    func recordDaemonStatus(_ status: DaemonStatus) throws
    func removeDaemonStatus(owner: String) throws
    func daemonStatuses() throws -> [DaemonStatus]
}

extension OutboxStore {
    /// The most recent dead rows.
    public func deadLetters(limit: Int) throws -> [DeadLetter] {
        try deadLetters(since: nil, limit: limit)
    }

    /// A claim that may take suspects, of any destination.
    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis) throws -> [ClaimedRow] {
        try claim(limit: limit, owner: owner, leaseUntil: leaseUntil, now: now, suspects: true, route: nil)
    }

    /// A claim of any destination's rows.
    public func claim(limit: Int, owner: String, leaseUntil: UnixMillis, now: UnixMillis, suspects: Bool) throws -> [ClaimedRow] {
        try claim(limit: limit, owner: owner, leaseUntil: leaseUntil, now: now, suspects: suspects, route: nil)
    }
}

/// The rows of one destination: those whose `destination` is `name`, and — for the default
/// destination — those whose `destination` is NULL.
public struct Route: Sendable, Equatable, Hashable {
    public var name: String
    public var includingUnrouted: Bool
    public init(name: String, includingUnrouted: Bool) {
        self.name = name
        self.includingUnrouted = includingUnrouted
    }

    public func matches(_ destination: String?) -> Bool {
        destination.map { $0 == name } ?? includingUnrouted
    }

    /// Why a row for an unconfigured destination is dead (the name escaped and bounded).
    public static func unknownReason(_ destination: String, known: [String]) -> String {
        "destination '\(SafeText.escapingControls(String(destination.prefix(100))))' is not configured (configured: \(known.joined(separator: ", "))); add it to destinations:, restart, then dead redrive these rows"
    }
}

public struct DestinationBacklog: Sendable, Equatable {
    /// `nil`: rows whose destination is NULL (the default destination).
    public var destination: String?
    public var pending = 0
    public var inflight = 0
    public var dead = 0
    public init(destination: String?, pending: Int = 0, inflight: Int = 0, dead: Int = 0) {
        self.destination = destination
        self.pending = pending
        self.inflight = inflight
        self.dead = dead
    }
}

public struct Backlog: Sendable, Equatable {
    public var pending = 0
    public var inflight = 0
    public var dead = 0
    /// Insert time of the oldest row not yet final.
    public var oldestCreatedAt: UnixMillis?
    public init(pending: Int = 0, inflight: Int = 0, dead: Int = 0, oldestCreatedAt: UnixMillis? = nil) {
        self.pending = pending
        self.inflight = inflight
        self.dead = dead
        self.oldestCreatedAt = oldestCreatedAt
    }
}

public struct NewEvent: Sendable, Equatable {
    public var eventID: String
    public var payload: String
    /// The destination column (`nil`: the default destination).
    public var destination: String?
    public init(eventID: String, payload: String, destination: String? = nil) {
        self.eventID = eventID
        self.payload = payload
        self.destination = destination
    }
}

public struct EnqueueResult: Sendable, Equatable {
    public var inserted = 0
    public var duplicates = 0
    public init(inserted: Int = 0, duplicates: Int = 0) {
        self.inserted = inserted
        self.duplicates = duplicates
    }
}

public struct ClaimedRow: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var payload: [UInt8]
    public var createdAt: UnixMillis
    /// Attempts including this claim.
    public var attempts: Int
    /// When an earlier attempt first may have reached TikTok, if one did.
    public var firstSentAt: UnixMillis?
    /// Earlier claims of this row that ended without a result (lease expired or its daemon
    /// gone): a row with any is a suspect, claimed in ever smaller groups.
    public var unsettledClaims: Int
    /// False when the stored `event_id` is not valid UTF-8; ``eventID`` then shows it with
    /// replacement characters, and the row must be dead-lettered, never sent under an
    /// altered deduplication key.
    public var eventIDIsValidUTF8: Bool

    public init(id: Int64, eventID: String, payload: [UInt8], createdAt: UnixMillis, attempts: Int, firstSentAt: UnixMillis?,
                unsettledClaims: Int = 0, eventIDIsValidUTF8: Bool = true) {
        self.id = id
        self.eventID = eventID
        self.payload = payload
        self.createdAt = createdAt
        self.unsettledClaims = unsettledClaims
        self.eventIDIsValidUTF8 = eventIDIsValidUTF8
        self.attempts = attempts
        self.firstSentAt = firstSentAt
    }
}

/// What an attempt left behind, recorded on the row.
public struct AttemptRecord: Sendable, Equatable {
    public var httpStatus: Int?
    public var tiktokCode: Int?
    /// Bounded to 1,000 characters by the store; must carry no token and no clear-text PII.
    public var error: String?
    /// The request may have reached TikTok: starts the row's 48-hour dedup window.
    public var mayHaveReachedTikTok: Bool
    /// For a delivered row, the event exactly as sent (JSON), when `delivery.keep_sent` is on.
    public var sentEvent: String?

    public init(httpStatus: Int? = nil, tiktokCode: Int? = nil, error: String? = nil, mayHaveReachedTikTok: Bool = false, sentEvent: String? = nil) {
        self.sentEvent = sentEvent
        self.httpStatus = httpStatus
        self.tiktokCode = tiktokCode
        self.error = error
        self.mayHaveReachedTikTok = mayHaveReachedTikTok
    }
}

/// The outcome applied to one claimed row.
public enum Settlement: Sendable, Equatable {
    case delivered(id: Int64, AttemptRecord)
    case retry(id: Int64, at: UnixMillis, AttemptRecord)
    case dead(id: Int64, AttemptRecord)
    case skipped(id: Int64, reason: String)

    public var id: Int64 {
        switch self {
        case .delivered(let id, _), .retry(let id, _, _), .dead(let id, _), .skipped(let id, _): return id
        }
    }
}

/// Which dead rows an operator means.
public enum DeadSelection: Sendable, Equatable {
    case all
    case ids([Int64])
    case eventIDs([String])
    /// Dead since this time (finished at or after it).
    case deadSince(UnixMillis)
    /// Dead before this time.
    case deadBefore(UnixMillis)
}

public enum RowState: String, Sendable, CaseIterable {
    case pending, inflight, delivered, skipped, dead
}

public struct OutboxStats: Sendable, Equatable {
    public var counts: [RowState: Int] = [:]
    /// Created time of the oldest row not yet final (pending or inflight).
    public var oldestPendingCreatedAt: UnixMillis?
    /// Events delivered per second over the last minute, summed over the running daemons as
    /// each measures it (the number systemd's STATUS= line shows too).
    public var deliveryRate: Double = 0
    public var recentErrors: [RecentError] = []
    public var daemons: [DaemonStatus] = []

    public init() {}

    public func count(_ state: RowState) -> Int { counts[state] ?? 0 }
}

public struct RecentError: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var state: RowState
    public var httpStatus: Int?
    public var tiktokCode: Int?
    public var error: String
    public var at: UnixMillis?
    public init(id: Int64, eventID: String, state: RowState, httpStatus: Int?, tiktokCode: Int?, error: String, at: UnixMillis?) {
        self.id = id
        self.eventID = eventID
        self.state = state
        self.httpStatus = httpStatus
        self.tiktokCode = tiktokCode
        self.error = error
        self.at = at
    }
}

public struct DeadLetter: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var eventName: String?
    public var attempts: Int
    public var httpStatus: Int?
    public var tiktokCode: Int?
    public var error: String?
    public var createdAt: UnixMillis
    public var deadSince: UnixMillis
    public var payload: String

    public init(id: Int64, eventID: String, eventName: String?, attempts: Int, httpStatus: Int?, tiktokCode: Int?,
                error: String?, createdAt: UnixMillis, deadSince: UnixMillis, payload: String) {
        self.id = id
        self.eventID = eventID
        self.eventName = eventName
        self.attempts = attempts
        self.httpStatus = httpStatus
        self.tiktokCode = tiktokCode
        self.error = error
        self.createdAt = createdAt
        self.deadSince = deadSince
        self.payload = payload
    }
}

/// One outbox row as an operator sees it (`tiktok-forwarder show`).
public struct OutboxRow: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var state: RowState
    public var attempts: Int
    public var createdAt: UnixMillis
    public var nextAttemptAt: UnixMillis
    public var finishedAt: UnixMillis?
    public var leaseOwner: String?
    public var leaseExpiresAt: UnixMillis?
    public var httpStatus: Int?
    public var tiktokCode: Int?
    public var error: String?
    public var payload: String
    /// The event as sent to TikTok, for a delivered row when `delivery.keep_sent` was on.
    public var sentEvent: String?

    public init(id: Int64, eventID: String, state: RowState, attempts: Int, createdAt: UnixMillis, nextAttemptAt: UnixMillis,
                finishedAt: UnixMillis?, leaseOwner: String?, leaseExpiresAt: UnixMillis?, httpStatus: Int?, tiktokCode: Int?,
                error: String?, payload: String, sentEvent: String?) {
        self.id = id
        self.eventID = eventID
        self.state = state
        self.attempts = attempts
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.finishedAt = finishedAt
        self.leaseOwner = leaseOwner
        self.leaseExpiresAt = leaseExpiresAt
        self.httpStatus = httpStatus
        self.tiktokCode = tiktokCode
        self.error = error
        self.payload = payload
        self.sentEvent = sentEvent
    }
}

public struct DaemonStatus: Sendable, Equatable {
    /// `host:pid:random`: unique across hosts sharing one PostgreSQL outbox.
    public var owner: String
    /// The host the daemon runs on (from its owner).
    public var host: String { owner.split(separator: ":", omittingEmptySubsequences: false).first.map(String.init) ?? owner }
    public var pid: Int
    public var startedAt: UnixMillis
    public var heartbeatAt: UnixMillis
    /// Why delivery is paused (a configuration error), or `nil` while it runs.
    public var pausedReason: String?
    public var inFlightLimit: Int?
    /// Events delivered per second over the last minute.
    public var deliveryRate: Double?

    public init(owner: String, pid: Int, startedAt: UnixMillis, heartbeatAt: UnixMillis, pausedReason: String? = nil, inFlightLimit: Int? = nil,
                deliveryRate: Double? = nil) {
        self.deliveryRate = deliveryRate
        self.owner = owner
        self.pid = pid
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.pausedReason = pausedReason
        self.inFlightLimit = inFlightLimit
    }
}

/// Keeps stored error text bounded (the schema allows 1,000 characters).
public func boundedError(_ text: String, limit: Int = 1000) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
}
