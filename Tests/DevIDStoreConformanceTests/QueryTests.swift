import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Listing queries")
struct QueryTests {
    static func credential(
        _ index: Int, device: String = "dev-1", notBefore: TimeInterval, createdAt: TimeInterval = 10,
        status: CredentialStatus
    ) -> Credential {
        var credential = Fixture.credential(index, device: device, createdAt: Fixture.time(createdAt))
        credential.notBefore = Fixture.time(notBefore)
        credential.status = status
        return credential
    }

    @Test(arguments: StoreKind.allCases)
    func activeCredentialsAreNewestFirst(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertDevice(Fixture.device("dev-2"), audit: nil)
            let oldest = Self.credential(1, notBefore: 0, status: .active)
            let middle = Self.credential(2, notBefore: 100, status: .superseded)
            let revoked = Self.credential(3, notBefore: 200, status: .revoked)
            let expired = Self.credential(4, notBefore: 50, status: .expired)
            // Same notBefore as `middle`: the later createdAt comes first, then the greater serial.
            let sameStartNewer = Self.credential(5, notBefore: 100, createdAt: 20, status: .active)
            let sameStartHigherSerial = Self.credential(6, notBefore: 100, status: .active)
            let otherDevice = Self.credential(7, device: "dev-2", notBefore: 300, status: .active)
            for credential in [oldest, middle, revoked, expired, sameStartNewer, sameStartHigherSerial, otherDevice] {
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            }

            #expect(
                try await store.activeCredentials(device: Fixture.deviceID("dev-1")) == [
                    sameStartNewer, sameStartHigherSerial, middle, oldest,
                ])
            #expect(try await store.activeCredentials(device: Fixture.deviceID("dev-2")) == [otherDevice])
            #expect(try await store.activeCredentials(device: Fixture.deviceID("ghost")) == [])

            try await store.updateCredentialStatus(
                serial: oldest.serial, status: .revoked, revokedAt: Fixture.time(400), reason: .superseded, audit: nil)
            #expect(
                try await store.activeCredentials(device: Fixture.deviceID("dev-1")).map(\.serial) == [
                    sameStartNewer.serial, sameStartHigherSerial.serial, middle.serial,
                ])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func claimTokensAreNewestFirst(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            #expect(try await store.claimTokens(tenant: nil) == [])
            func token(_ id: String, tenant: String = "acme", createdAt: TimeInterval) -> ClaimToken {
                var token = Fixture.claimToken(id, tenant: tenant)
                token.createdAt = Fixture.time(createdAt)
                return token
            }
            let old = token("tok-old", createdAt: 1)
            let newest = token("tok-new", createdAt: 30)
            // Same createdAt: descending id.
            let tieA = token("tok-tie-a", createdAt: 20)
            let tieB = token("tok-tie-b", createdAt: 20)
            let foreign = token("tok-other", tenant: "other", createdAt: 25)
            for token in [old, tieA, newest, foreign, tieB] { try await store.insertClaimToken(token, audit: nil) }
            try await store.revokeClaimToken(id: "tok-old", audit: nil)
            var revokedOld = old
            revokedOld.revoked = true

            #expect(try await store.claimTokens(tenant: nil) == [newest, foreign, tieB, tieA, revokedOld])
            #expect(try await store.claimTokens(tenant: Fixture.tenantID("acme")) == [newest, tieB, tieA, revokedOld])
            #expect(try await store.claimTokens(tenant: Fixture.tenantID("other")) == [foreign])
            #expect(try await store.claimTokens(tenant: Fixture.tenantID("nobody")) == [])

            // Pages: each continues after the last token of the one before, ties included, until one is short.
            #expect(try await store.claimTokens(ClaimTokenFilter(limit: 2)) == [newest, foreign])
            #expect(try await store.claimTokens(ClaimTokenFilter(limit: 2, after: "tok-other")) == [tieB, tieA])
            #expect(try await store.claimTokens(ClaimTokenFilter(limit: 2, after: "tok-tie-a")) == [revokedOld])
            #expect(try await store.claimTokens(ClaimTokenFilter(limit: 2, after: "tok-old")) == [])
            let acme = Fixture.tenantID("acme")
            #expect(try await store.claimTokens(ClaimTokenFilter(tenant: acme, limit: 1, after: "tok-new")) == [tieB])
            // A cursor of another tenant still marks a place in the order.
            #expect(
                try await store.claimTokens(ClaimTokenFilter(tenant: acme, after: "tok-other")) == [tieB, tieA, revokedOld])
            await expectStoreError(.notFound) { () async throws(StoreError) in
                _ = try await store.claimTokens(ClaimTokenFilter(after: "tok-gone"))
            }
        }
    }
}
