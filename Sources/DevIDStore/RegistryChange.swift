public import DevIDCore
import Synchronization

/// One change to the registry's identity state, recorded in the same transaction as the change itself (SQLite:
/// by triggers on the tables, so no write path can forget one). Caches and publishers (the decision index, the
/// OCSP cache and CRLs, the admin tokens, the broker files) follow these instead of being told by each route.
///
/// Not recorded: `last_seen`, a token's `last_used_at` and a claim token's remaining uses changing on every
/// check-in, request or enrollment (nothing caches them), and a credential's first use (`confirmed_at`), which the
/// decision index notes itself.
public struct RegistryChange: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case tenant, lot, device, credential
        case claimToken = "claim_token"
        case adminToken = "admin_token"
        case issuingCA = "issuing_ca"
        case serviceCertificate = "service_certificate"
        /// A server setting (``Store/settings()``): subject is its key.
        case setting
        /// The CRLs the job-lease holder built were stored (``Store/storeCRLs(_:)``): detail is their number.
        case crl
        /// Not recorded: delivered when the changes after the cursor were pruned before this feed read them
        /// (sequence numbers skipped). A subscriber reloads everything it caches.
        case missed
    }

    /// Increasing, without gaps on SQLite (one writer); the stream's cursor.
    public let sequence: Int64
    public let kind: Kind
    /// The row's key: a tenant, lot or device id, a serial, a token id, an issuing CA's number.
    public let subject: String
    /// The device a device or credential row belongs to.
    public let device: DeviceID?
    /// The tenant of a tenant, device, lot or claim token row.
    public let tenant: TenantID?
    /// What happened: `created`, `deleted`, `updated`, `idevid` (a device's IDevID serial or revocation), the new
    /// state of a device, credential, issuing CA or service certificate (`active`, `revoked`, `superseded`, ...;
    /// `revoked:superseded` for a superseded credential revoked (the rotation retired it after its successor took
    /// over), `revoked` for a token.
    public let detail: String

    public init(
        sequence: Int64, kind: Kind, subject: String, device: DeviceID? = nil, tenant: TenantID? = nil, detail: String
    ) {
        self.sequence = sequence
        self.kind = kind
        self.subject = subject
        self.device = device
        self.tenant = tenant
        self.detail = detail
    }

    public var description: String { "#\(sequence) \(kind.rawValue) \(subject) \(detail)" }
}

/// Delivers the registry's changes to subscribers, each change once, in batches.
///
/// A store hands it every batch it reads (``deliver(_:)``): SQLite reads the changes a write transaction made
/// inside that transaction and delivers them after the commit, before the write returns, so a route handler's
/// next request already sees every cache in step. ``catchUp(from:)`` reads what other writers (another process
/// on the same file; on PostgreSQL, other servers) committed; a server runs it every second. A batch may repeat
/// changes another batch already delivered (two writers racing); the cursor drops those.
public final class ChangeFeed: Sendable {
    public typealias Subscriber = @Sendable ([RegistryChange]) async -> Void

    private struct State {
        var cursor: Int64
        var subscribers: [(id: Int, deliver: Subscriber)] = []
        var nextID = 0
        var delivered = 0
    }
    private let state: Mutex<State>
    /// One batch is applied at a time, in order: a write whose changes another write (or the poller) read first
    /// waits here until they are applied, so every write returns with its changes in effect.
    private let gate = DeliveryGate()
    /// Set while a subscriber runs: a write it makes delivers without waiting for the gate it holds.
    @TaskLocal static var delivering = false
    /// The sequence the feed started after (the newest change when the store was opened).
    public let start: Int64

    /// Starts after `sequence`: changes made before the feed existed are not delivered.
    public init(after sequence: Int64 = 0) {
        state = Mutex(State(cursor: sequence))
        start = sequence
    }

    /// The last sequence delivered.
    public var cursor: Int64 { state.withLock { $0.cursor } }

    private struct Wake {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let wake = Mutex(Wake())

    /// Tells the reader of other writers' changes (``sleep(upTo:)``) that there are some: PostgreSQL's
    /// `NOTIFY` on a commit of another server. A nudge while nobody sleeps ends the next sleep at once.
    public func nudge() {
        let waiter = wake.withLock { wake -> CheckedContinuation<Void, Never>? in
            guard let waiter = wake.waiter else {
                wake.pending = true
                return nil
            }
            wake.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Waits `duration`, or less if ``nudge()`` is called (or was, since the last sleep). One sleeper at a time.
    public func sleep(upTo duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.nextNudge() }
            await group.next()
            group.cancelAll()
        }
    }

    private func nextNudge() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = wake.withLock { wake -> Bool in
                    if wake.pending || Task.isCancelled {
                        wake.pending = false
                        return true
                    }
                    wake.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = wake.withLock { wake -> CheckedContinuation<Void, Never>? in
                defer { wake.waiter = nil }
                return wake.waiter
            }
            waiter?.resume()
        }
    }

    /// Changes delivered since the feed started.
    public var delivered: Int { state.withLock { $0.delivered } }

    /// Whether anything listens. A store with no subscriber (a CLI command, a bulk import in a test) does not read
    /// its changes back: it only moves the cursor past them (``skip(through:)``).
    public var hasSubscribers: Bool { state.withLock { !$0.subscribers.isEmpty } }

    /// Moves the cursor to `sequence` (never back) without delivering: changes committed while nobody listened.
    /// A server that subscribes later replays them from ``start``.
    public func skip(through sequence: Int64) {
        state.withLock { $0.cursor = max($0.cursor, sequence) }
    }

    /// Adds a subscriber; returns what ``unsubscribe(_:)`` takes. A subscriber that captures the store keeps it
    /// (and its database connections) alive until it is removed.
    @discardableResult
    public func subscribe(_ subscriber: @escaping Subscriber) -> Int {
        state.withLock { state in
            state.nextID += 1
            state.subscribers.append((state.nextID, subscriber))
            return state.nextID
        }
    }

    public func unsubscribe(_ id: Int) {
        state.withLock { $0.subscribers.removeAll { $0.id == id } }
    }

    /// Delivers the changes of `batch` after the cursor (it may hold ones already delivered) to every subscriber,
    /// and returns once each has handled them, and every batch delivered before them too.
    public func deliver(_ batch: [RegistryChange]) async {
        guard !batch.isEmpty else { return }
        if Self.delivering {
            await deliverNow(batch)
            return
        }
        await gate.enter()
        await Self.$delivering.withValue(true) { await deliverNow(batch) }
        await gate.leave()
    }

    private func deliverNow(_ batch: [RegistryChange]) async {
        let (fresh, subscribers) = state.withLock { state -> ([RegistryChange], [Subscriber]) in
            var fresh = batch.filter { $0.sequence > state.cursor }.sorted { $0.sequence < $1.sequence }
            guard let first = fresh.first, let last = fresh.last else { return ([], []) }
            // One writer numbers changes without gaps: a gap is changes pruned before this feed read them.
            if first.sequence > state.cursor + 1 {
                fresh.insert(
                    RegistryChange(
                        sequence: first.sequence - 1, kind: .missed, subject: "\(state.cursor + 1)...\(first.sequence - 1)",
                        detail: "pruned before read"), at: 0)
            }
            state.cursor = last.sequence
            state.delivered += fresh.count
            return (fresh, state.subscribers.map(\.deliver))
        }
        guard !fresh.isEmpty else { return }
        for subscriber in subscribers { await subscriber(fresh) }
    }

    /// Reads and delivers what was committed after the cursor, `limit` at a time, until none is left; returns
    /// how many changes it delivered.
    @discardableResult
    public func catchUp(from store: any Store, limit: Int = 10_000) async throws(StoreError) -> Int {
        var total = 0
        while true {
            let after = cursor
            let batch = try await store.changes(after: after, limit: limit)
            let before = delivered
            await deliver(batch)
            total += delivered - before
            if batch.count < limit { return total }
        }
    }
}

/// A first-come, first-served async lock: ``ChangeFeed`` applies one batch at a time.
private actor DeliveryGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        // Handed over by `leave()` with `busy` still set.
        await withCheckedContinuation { waiters.append($0) }
    }

    func leave() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

/// A CRL as the server holding the job lease built and stored it (``Store/storeCRLs(_:)``), for every server to serve.
public struct StoredCRL: Sendable, Hashable {
    /// The file name without `.crl` (`issuing`, `issuing-4-1`, `manufacturer`).
    public var name: String
    /// The CA it belongs to (`issuing`, `services`, `manufacturer`).
    public var caName: String
    /// Where it is published (its certificates' CRL distribution point).
    public var url: String
    public var number: UInt64
    /// The signed CRL; empty for a withheld one.
    public var der: [UInt8]
    /// Set instead of `der` when the CRL is not served under this name (a partitioned CA's complete CRL over the
    /// size limit): the one-line reason a client gets.
    public var withheld: String?

    public init(name: String, caName: String, url: String, number: UInt64, der: [UInt8], withheld: String? = nil) {
        self.name = name
        self.caName = caName
        self.url = url
        self.number = number
        self.der = der
        self.withheld = withheld
    }
}

/// Whether this process runs the registry's once-only jobs: building and signing the CRLs, the rotation sweeper.
///
/// SQLite and the in-memory store have one server: theirs is always held. On PostgreSQL each server asks for one
/// advisory lock on a connection of its own (``PostgresStore``): the server holding it runs the jobs; when it dies
/// its connection closes, PostgreSQL releases the lock, and another server takes it within a second or two.
public final class JobLease: Sendable {
    private let state: Mutex<Bool>

    public init(held: Bool) { state = Mutex(held) }

    public static let alwaysHeld = JobLease(held: true)

    public var isHeld: Bool { state.withLock { $0 } }

    /// Returns whether it changed.
    @discardableResult
    func set(_ held: Bool) -> Bool {
        state.withLock { state in
            defer { state = held }
            return state != held
        }
    }
}
