import DevIDCore
@testable import DevIDServer
import DevIDStore
import Foundation
import Testing

/// The in-memory admin tokens: what is cached, when a change counts, and that last-used is written back coalesced.
@Suite("Admin token cache")
struct AdminTokenCacheTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func store(_ secrets: [String: AdminRole]) async throws -> MemoryStore {
        let store = MemoryStore()
        for (index, (secret, role)) in secrets.sorted(by: { $0.key < $1.key }).enumerated() {
            try await store.insertAdminToken(
                AdminToken(
                    id: "t\(index)", name: secret, secretHash: AdminTokens.hash(secret), role: role,
                    createdAt: now, expiresAt: secret == "short" ? now.addingTimeInterval(60) : nil),
                audit: nil)
        }
        return store
    }

    @Test("valid, unknown, expired and revoked tokens")
    func verdicts() async throws {
        let store = try await Self.store(["boot": .admin, "short": .operator])
        let cache = AdminTokenCache(store: store, clock: ContinuousClock(), refreshInterval: .seconds(3600))
        guard case .valid(let token) = try await cache.authenticate("boot", now: Self.now) else {
            Issue.record("boot should be valid")
            return
        }
        #expect(token.role == .admin)
        #expect(try await cache.authenticate("nope", now: Self.now) == .unknown)
        if case .valid = try await cache.authenticate("short", now: Self.now.addingTimeInterval(59)) {} else {
            Issue.record("short is valid for 60 s")
        }
        if case .expired = try await cache.authenticate("short", now: Self.now.addingTimeInterval(60)) {} else {
            Issue.record("short expires after 60 s")
        }
        _ = try await store.revokeAdminToken(id: "t1", now: Self.now, audit: nil)
        await cache.invalidate()
        if case .revoked = try await cache.authenticate("short", now: Self.now) {} else {
            Issue.record("a revoked token is refused after invalidate()")
        }
    }

    @Test("a change made elsewhere counts only after the refresh interval, or at once after invalidate()")
    func refresh() async throws {
        let store = try await Self.store(["boot": .admin, "ops": .operator])
        let cached = AdminTokenCache(store: store, clock: ContinuousClock(), refreshInterval: .seconds(3600))
        let fresh = AdminTokenCache(store: store, clock: ContinuousClock(), refreshInterval: .milliseconds(100))
        for cache in [cached, fresh] {
            if case .valid = try await cache.authenticate("ops", now: Self.now) {} else { Issue.record("ops valid") }
        }
        // Revoked behind the caches' back, as another process sharing the registry would.
        _ = try await store.revokeAdminToken(id: "t1", now: Self.now, audit: nil)
        // Still the cached copy: no database read per request.
        if case .valid = try await cached.authenticate("ops", now: Self.now) {} else {
            Issue.record("within the refresh interval the cache answers")
        }
        try await Task.sleep(for: .milliseconds(150))
        if case .revoked = try await fresh.authenticate("ops", now: Self.now) {} else {
            Issue.record("after the refresh interval the change counts")
        }
        await cached.invalidate()
        if case .revoked = try await cached.authenticate("ops", now: Self.now) {} else {
            Issue.record("after invalidate() the change counts")
        }
    }

    @Test("last-used is written back at flush, once for many uses, not per request")
    func coalescedLastUsed() async throws {
        let store = try await Self.store(["boot": .admin])
        let cache = AdminTokenCache(store: store, clock: ContinuousClock())
        for second in 0..<100 {
            await cache.recordUse(id: "t0", at: Self.now.addingTimeInterval(TimeInterval(second)))
        }
        #expect(try await store.adminTokens().first?.lastUsedAt == nil, "nothing written before the flush")
        try await cache.flush()
        #expect(try await store.adminTokens().first?.lastUsedAt == Self.now.addingTimeInterval(99))
        // An older use recorded later does not move it back.
        await cache.recordUse(id: "t0", at: Self.now)
        try await cache.flush()
        #expect(try await store.adminTokens().first?.lastUsedAt == Self.now.addingTimeInterval(99))
    }
}
