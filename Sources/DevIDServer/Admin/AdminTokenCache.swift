import Crypto
public import DevIDCore
public import DevIDStore
public import Foundation
public import ServiceLifecycle

/// The admin tokens, held in memory so that authenticating a request reads no database.
///
/// - The cache reloads from the registry when it is older than `refreshInterval` (1 s): a token created or
///   revoked by another process sharing the registry counts within a second. A change made through this server
///   calls ``invalidate()`` and counts at the next request.
/// - A presented token is hashed (SHA-256) and compared in constant time with every cached hash (``TokenDigest``).
/// - When a token was last used is kept here and written back every `flushInterval` (and at shutdown), one
///   transaction for all tokens: never a write per request.
///
/// `run()` (in the server's `ServiceGroup`) does the write-back; `C` is the clock of both intervals.
public actor AdminTokenCache<C: Clock>: Service where C.Duration == Duration {
    /// What a presented token turned out to be.
    public enum Verdict: Sendable, Equatable {
        case valid(AdminToken)
        case expired(AdminToken)
        case revoked(AdminToken)
        case unknown
    }

    let store: any Store
    let clock: C
    let refreshInterval: Duration
    let flushInterval: Duration
    /// A token and its digest (nil if the stored hash is not 64 hex digits: it then matches nothing).
    struct Entry: Sendable {
        let token: AdminToken
        let digest: TokenDigest?
    }

    private var tokens: [Entry] = []
    private var loadedAt: C.Instant?
    /// The last load that read the registry (``loadedAt`` also moves when an outage extends the cache).
    private var readAt: C.Instant?
    private var loading: Task<[Entry], any Error>?
    /// Bumped by ``invalidate()``, so that a load that started before a change cannot install what it read.
    private var generation = 0
    private var pendingUses: [String: Date] = [:]

    public init(
        store: any Store, clock: C, refreshInterval: Duration = .seconds(1), flushInterval: Duration = .seconds(5)
    ) {
        self.store = store
        self.clock = clock
        self.refreshInterval = refreshInterval
        self.flushInterval = flushInterval
    }

    /// Finds the token whose SHA-256 matches `presented`, and says whether it may be used at `now`.
    public func authenticate(_ presented: String, now: Date) async throws -> Verdict {
        let digest = TokenDigest(secret: presented)
        var matched: AdminToken?
        for candidate in try await current() {
            // Visit every token so the time taken does not depend on which one matched.
            if candidate.digest?.matches(digest) == true { matched = candidate.token }
        }
        guard let matched else { return .unknown }
        if matched.revoked { return .revoked(matched) }
        guard matched.isUsable(at: now) else { return .expired(matched) }
        return .valid(matched)
    }

    /// The token with this id as currently cached (revoked and expired ones too), for the dashboard's sessions,
    /// which keep the id and not the secret.
    public func token(id: String) async throws -> AdminToken? {
        try await current().first { $0.token.id == id }?.token
    }

    /// Notes that a token authenticated a request at `time`; written back at the next flush.
    public func recordUse(id: String, at time: Date) {
        if let known = pendingUses[id], known >= time { return }
        pendingUses[id] = time
    }

    /// Forgets what was loaded: the next request reads the registry again. Call after every change.
    public func invalidate() {
        generation += 1
        loadedAt = nil
        loading = nil
    }

    /// Writes the pending last-used times back now (also before listing tokens, so the list is current).
    public func flush() async throws {
        guard !pendingUses.isEmpty else { return }
        let uses = pendingUses
        pendingUses = [:]
        do {
            try await store.recordAdminTokenUse(uses)
        } catch {
            // Keep them for the next attempt, unless newer ones arrived meanwhile.
            for (id, time) in uses where pendingUses[id].map({ $0 < time }) ?? true { pendingUses[id] = time }
            throw error
        }
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let (interval, clock) = (flushInterval, self.clock)
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval, clock: clock) }
            } catch {
                break
            }
            try? await flush()
        }
        try? await flush()
    }

    /// The cached tokens, reloaded if older than `refreshInterval`; concurrent callers share one load.
    private func current() async throws -> [Entry] {
        if let loadedAt, clock.now < loadedAt.advanced(by: refreshInterval) { return tokens }
        if let loading { return try await loading.value }
        let store = self.store
        let started = generation
        let startedAt = clock.now
        let task = Task {
            try await store.adminTokens().map { Entry(token: $0, digest: TokenDigest(hex: $0.secretHash)) }
        }
        loading = task
        do {
            let loaded = try await task.value
            if generation == started {
                tokens = loaded
                loadedAt = startedAt
                readAt = startedAt
                loading = nil
            }
            return loaded
        } catch let error as StoreError where error.code == .unavailable {
            if generation == started { loading = nil }
            // The registry cannot be reached: the tokens read last keep authenticating, for
            // DecisionEngine.outageMaximumAge after that read, and the registry is asked again every 5 s meanwhile
            // rather than at every request.
            guard let readAt, clock.now < readAt.advanced(by: .seconds(Int(DecisionEngine.outageMaximumAge))) else {
                throw error
            }
            if generation == started { loadedAt = clock.now.advanced(by: .seconds(5) - refreshInterval) }
            return tokens
        } catch {
            if generation == started { loading = nil }
            throw error
        }
    }
}
