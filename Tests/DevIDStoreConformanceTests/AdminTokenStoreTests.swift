import DevIDCore
@testable import DevIDStore
import Foundation
import GRDB
import Testing

/// Admin tokens with roles: names unique among live tokens, revocation that never leaves no admin, coalesced
/// last-used write-back, the tenant filter of the audit listing, and the v8 migration of older tokens.
@Suite("Admin token store")
struct AdminTokenStoreTests {
    static func token(
        _ id: String, name: String? = nil, role: AdminRole = .admin, tenants: [String]? = nil, at offset: TimeInterval = 1,
        expiresAt: Date? = nil
    ) -> AdminToken {
        AdminToken(
            id: id, name: name, secretHash: Fixture.sha256Hex(Array(id.utf8)), role: role,
            tenants: tenants?.map { Fixture.tenantID($0) }, createdAt: Fixture.time(offset), expiresAt: expiresAt)
    }

    @Test("fields round-trip; a live name is unique, a revoked one can be taken again", arguments: StoreKind.allCases)
    func namesAndFields(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let ops = Self.token(
                "ops1", name: "ci", role: .operator, tenants: ["acme", "beta"], expiresAt: Fixture.time(1000))
            try await store.insertAdminToken(Self.token("boot", name: "bootstrap"), audit: nil)
            try await store.insertAdminToken(ops, audit: Fixture.event("admin.token.create"))
            #expect(try await store.adminTokens().first { $0.id == "ops1" } == ops)
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertAdminToken(Self.token("ops2", name: "ci"), audit: Fixture.event("x"))
            }
            #expect(try await store.adminTokens().count == 2)
            #expect(try await Fixture.auditCount(store) == 1)
            _ = try await store.revokeAdminToken(id: "ops1", now: Fixture.time(2), audit: nil)
            try await store.insertAdminToken(Self.token("ops2", name: "ci"), audit: nil)
            #expect(try await store.adminTokens().map(\.name).sorted() == ["bootstrap", "ci", "ci"])
        }
    }

    @Test("the last usable admin token cannot be revoked; nothing changes then", arguments: StoreKind.allCases)
    func lastAdmin(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.insertAdminToken(Self.token("boot", name: "bootstrap"), audit: nil)
            try await store.insertAdminToken(Self.token("aud", role: .auditor), audit: nil)
            // An admin token that expired does not count as another admin.
            try await store.insertAdminToken(Self.token("old", expiresAt: Fixture.time(10)), audit: nil)
            let refused = await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.revokeAdminToken(id: "boot", now: Fixture.time(20), audit: Fixture.event("r"))
            }
            #expect(refused?.reason == "admin token boot (bootstrap) is the last usable admin token; create another first")
            #expect(try await store.adminTokens().allSatisfy { !$0.revoked })
            #expect(try await Fixture.auditCount(store) == 0)
            // Other roles can always be revoked; an unknown id is notFound; twice is a conflict.
            let revoked = try await store.revokeAdminToken(id: "aud", now: Fixture.time(20), audit: Fixture.event("r"))
            #expect(revoked.revoked)
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.revokeAdminToken(id: "aud", now: Fixture.time(20), audit: nil)
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.revokeAdminToken(id: "ghost", now: Fixture.time(20), audit: nil)
            }
            // With a second usable admin, the first may go.
            try await store.insertAdminToken(Self.token("adm2"), audit: nil)
            _ = try await store.revokeAdminToken(id: "boot", now: Fixture.time(20), audit: nil)
            #expect(try await store.adminTokens().filter(\.revoked).map(\.id) == ["aud", "boot"])
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    @Test("last-used times are written back in one call and never move backwards", arguments: StoreKind.allCases)
    func lastUsed(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.insertAdminToken(Self.token("a"), audit: nil)
            try await store.insertAdminToken(Self.token("b"), audit: nil)
            try await store.recordAdminTokenUse(["a": Fixture.time(50), "b": Fixture.time(60), "ghost": Fixture.time(1)])
            try await store.recordAdminTokenUse(["a": Fixture.time(40)])
            let tokens = try await store.adminTokens()
            #expect(tokens.map(\.lastUsedAt) == [Fixture.time(50), Fixture.time(60)])
        }
    }

    @Test("the audit listing keeps only the given tenants' events, or one actor's", arguments: StoreKind.allCases)
    func auditTenantFilter(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            for (index, tenant) in ["acme", "beta", nil].enumerated() {
                var event = Fixture.event("x", at: TimeInterval(index))
                event.tenant = tenant.map { Fixture.tenantID($0) }
                try await store.appendAudit(event)
            }
            var filter = AuditFilter()
            filter.tenants = [Fixture.tenantID("acme")]
            #expect(try await store.auditEvents(filter).map(\.tenant) == [Fixture.tenantID("acme")])
            filter.tenants = nil
            #expect(try await store.auditEvents(filter).count == 3)
            try await store.appendAudit(
                AuditEvent(time: Fixture.time(9), actor: "admin:leaked", action: "revoke", outcome: .success))
            filter.actor = "admin:leaked"
            #expect(try await store.auditEvents(filter).map(\.action) == ["revoke"])
        }
    }

    @Test("v8 migration: older tokens become admin tokens for every tenant; the first one is bootstrap")
    func migration() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let queue = try DatabaseQueue(path: path)
        try SQLiteSchema.migrator.migrate(queue, upTo: "v6")
        try await queue.write { db in
            try db.execute(
                sql: "INSERT INTO admin_tokens (id, secret_hash, created_at) VALUES ('later', 'h2', 2000), ('first', 'h1', 1000)")
        }
        try queue.close()
        let store = try SQLiteStore(path: path)
        let tokens = try await store.adminTokens()
        #expect(tokens.map(\.id) == ["first", "later"])
        #expect(tokens.map(\.name) == ["bootstrap", "later"])
        #expect(tokens.allSatisfy { $0.role == .admin && $0.tenants == nil && !$0.revoked && $0.expiresAt == nil })
        try store.close()
    }
}
