import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Claim and admin tokens")
struct TokenTests {
    @Test(arguments: StoreKind.allCases)
    func insertAndFetchClaimTokens(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let token = Fixture.claimToken("tok-1", device: "dev-1", uses: 3)
            try await store.insertClaimToken(token, audit: Fixture.event("token.create"))
            #expect(try await store.claimToken(id: "tok-1") == token)
            #expect(try await store.claimToken(secretHash: token.secretHash) == token)
            #expect(try await store.claimToken(id: "tok-2") == nil)
            #expect(try await store.claimToken(secretHash: Fixture.sha256Hex(Array("nope".utf8))) == nil)

            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertClaimToken(Fixture.claimToken("tok-1", secret: "other"), audit: nil)
            }
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertClaimToken(Fixture.claimToken("tok-2", secret: "secret-tok-1"), audit: nil)
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertClaimToken(Fixture.claimToken("tok-3", tenant: "nobody"), audit: nil)
            }
            // A token may name a device that is not registered yet: bootstrapping it is what the token is for.
            try await store.insertClaimToken(Fixture.claimToken("tok-4", device: "ghost"), audit: nil)
            #expect(try await store.claimToken(id: "tok-4")?.device?.rawValue == "ghost")
            #expect(try await store.claimToken(id: "tok-2") == nil)
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func consumeCountsDown(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertClaimToken(Fixture.claimToken("tok-1", uses: 2), audit: nil)
            // Returns the token as it was before the use.
            #expect(try await store.consumeClaimToken(id: "tok-1", now: Fixture.time(60)).usesRemaining == 2)
            #expect(try await store.claimToken(id: "tok-1")?.usesRemaining == 1)
            #expect(try await store.consumeClaimToken(id: "tok-1", now: Fixture.time(61)).usesRemaining == 1)
            #expect(try await store.claimToken(id: "tok-1")?.usesRemaining == 0)
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "tok-1", now: Fixture.time(62))
            }
            #expect(try await store.claimToken(id: "tok-1")?.usesRemaining == 0)
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "ghost", now: Fixture.time(62))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func singleUseUnderConcurrency(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertClaimToken(Fixture.claimToken("tok-1", uses: 1), audit: nil)
            let results = await withTaskGroup(of: Result<ClaimToken, StoreError>.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        do throws(StoreError) {
                            return .success(try await store.consumeClaimToken(id: "tok-1", now: Fixture.time(60)))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.compactMap { try? $0.get() }.count == 1)
            #expect(
                results.allSatisfy { result in
                    if case .failure(let error) = result { return error.code == .conflict }
                    return true
                })
            #expect(try await store.claimToken(id: "tok-1")?.usesRemaining == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func expiredAndRevokedTokensAreRefused(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertClaimToken(
                Fixture.claimToken("expiring", uses: 5, expiresAt: Fixture.time(100)), audit: nil)
            try await store.insertClaimToken(Fixture.claimToken("born-revoked", revoked: true), audit: nil)
            try await store.insertClaimToken(Fixture.claimToken("to-revoke", uses: 5), audit: nil)

            #expect(try await store.consumeClaimToken(id: "expiring", now: Fixture.time(99)).usesRemaining == 5)
            // Expiry is exclusive: at expiresAt the token is already dead.
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "expiring", now: Fixture.time(100))
            }
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "expiring", now: Fixture.time(5000))
            }
            #expect(try await store.claimToken(id: "expiring")?.usesRemaining == 4)

            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "born-revoked", now: Fixture.time(1))
            }

            try await store.revokeClaimToken(id: "to-revoke", audit: Fixture.event("token.revoke"))
            #expect(try await store.claimToken(id: "to-revoke")?.revoked == true)
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.consumeClaimToken(id: "to-revoke", now: Fixture.time(1))
            }
            #expect(try await store.claimToken(id: "to-revoke")?.usesRemaining == 5)
            #expect(try await store.auditEvents(AuditFilter(action: "token.revoke")).count == 1)

            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.revokeClaimToken(id: "ghost", audit: Fixture.event("token.revoke"))
            }
            #expect(try await store.auditEvents(AuditFilter(action: "token.revoke")).count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func adminTokens(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let b = AdminToken(
                id: "admin-b", secretHash: Fixture.sha256Hex(Array("b".utf8)), createdAt: Fixture.time(5))
            let a = AdminToken(
                id: "admin-a", secretHash: Fixture.sha256Hex(Array("a".utf8)), createdAt: Fixture.time(6))
            #expect(try await store.adminTokens() == [])
            try await store.insertAdminToken(b, audit: Fixture.event("admin.token.create"))
            try await store.insertAdminToken(a, audit: nil)
            #expect(try await store.adminTokens() == [a, b])

            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertAdminToken(
                    AdminToken(
                        id: "admin-a", secretHash: Fixture.sha256Hex(Array("c".utf8)), createdAt: Fixture.time(7)),
                    audit: Fixture.event("admin.token.create"))
            }
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertAdminToken(
                    AdminToken(id: "admin-c", secretHash: a.secretHash, createdAt: Fixture.time(7)),
                    audit: Fixture.event("admin.token.create"))
            }
            #expect(try await store.adminTokens() == [a, b])
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }
}
