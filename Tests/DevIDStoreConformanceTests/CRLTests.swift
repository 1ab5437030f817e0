import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("CRL pages and status counts")
struct CRLTests {
    static let now = Fixture.time(1000)
    static let issuer = "CN=DevID Issuing CA,O=acme"

    static func credential(
        _ index: Int, status: CredentialStatus, issuer: String = CRLTests.issuer, notAfter: TimeInterval = 86_400
    ) -> Credential {
        var credential = Fixture.credential(index, device: "dev-1")
        credential.status = status
        credential.issuer = issuer
        credential.notAfter = Fixture.time(notAfter)
        if status == .revoked {
            credential.revokedAt = Fixture.time(500)
            credential.revocationReason = .keyCompromise
        }
        return credential
    }

    /// Revoked, unexpired, of `issuer`: 1, 2, 16 (serial 7e5710), 255 (7e57ff). Everything else is left out of
    /// the issuer's CRL for one reason each.
    static func prepare(_ store: any Store) async throws {
        try await Fixture.seed(store)
        let credentials = [
            credential(2, status: .revoked), credential(255, status: .revoked), credential(1, status: .revoked),
            credential(16, status: .revoked),
            credential(3, status: .revoked, issuer: "CN=Older Issuing CA,O=acme"),
            credential(4, status: .revoked, issuer: "cn=devid issuing ca,o=acme"),
            credential(5, status: .revoked, notAfter: 1000),
            credential(6, status: .revoked, notAfter: 999),
            credential(7, status: .active), credential(8, status: .superseded), credential(9, status: .expired),
            credential(10, status: .revoked, issuer: "CN=Caf\u{E9}"),
        ]
        for credential in credentials {
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
        }
    }

    static func serials(_ indices: [Int]) -> [SerialNumber] { indices.map(Fixture.serial) }

    @Test(arguments: StoreKind.allCases)
    func revokedCredentialsOfAnIssuerInSerialOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let page = try await store.revokedCredentials(
                issuer: Self.issuer, notExpiredAt: Self.now, afterSerial: nil, limit: 100)
            #expect(page.map(\.serial) == Self.serials([1, 16, 2, 255]))
            #expect(page.first == Self.credential(1, status: .revoked))

            // Every issuer: the older CA's 3, the lowercase look-alike 4 and 10 join in.
            #expect(
                try await store.revokedCredentials(issuer: nil, notExpiredAt: Self.now, afterSerial: nil, limit: 100)
                    .map(\.serial) == Self.serials([1, 16, 2, 3, 4, 10, 255]))
            // Issuers match byte for byte: a decomposed "é" is another issuer, though Swift's `==` says equal.
            #expect(
                try await store.revokedCredentials(
                    issuer: "CN=Cafe\u{301}", notExpiredAt: Self.now, afterSerial: nil, limit: 100) == [])
            #expect(
                try await store.revokedCredentials(
                    issuer: "CN=Caf\u{E9}", notExpiredAt: Self.now, afterSerial: nil, limit: 100
                ).map(\.serial) == Self.serials([10]))
            // A credential that expires at the CRL's time is left out; one second earlier it is in.
            #expect(
                try await store.revokedCredentials(
                    issuer: Self.issuer, notExpiredAt: Fixture.time(999), afterSerial: nil, limit: 100
                ).map(\.serial) == Self.serials([1, 16, 2, 5, 255]))
            #expect(
                try await store.revokedCredentials(
                    issuer: Self.issuer, notExpiredAt: Self.now, afterSerial: nil, limit: 0) == [])
            #expect(
                try await store.revokedCredentials(
                    issuer: "CN=Nobody", notExpiredAt: Self.now, afterSerial: nil, limit: 100) == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func pagesFollowTheLastSerial(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            var seen: [SerialNumber] = []
            var after: SerialNumber?
            var pages = 0
            while true {
                let page = try await store.revokedCredentials(
                    issuer: nil, notExpiredAt: Self.now, afterSerial: after, limit: 2)
                guard let last = page.last else { break }
                pages += 1
                seen += page.map(\.serial)
                after = last.serial
            }
            #expect(seen == Self.serials([1, 16, 2, 3, 4, 10, 255]))
            #expect(pages == 4)
            // After a serial the store does not hold: continues with the next greater one.
            #expect(
                try await store.revokedCredentials(
                    issuer: Self.issuer, notExpiredAt: Self.now, afterSerial: Fixture.serial(17), limit: 10
                ).map(\.serial) == Self.serials([2, 255]))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func credentialCountsByEffectiveStatus(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let empty = try await store.credentialCounts(now: Self.now)
            #expect(empty == [.active: 0, .superseded: 0, .revoked: 0, .expired: 0])

            try await Self.prepare(store)
            // 5 (revoked, notAfter = now) stays revoked. Add an active and a superseded one past their notAfter.
            try await store.insertCredential(
                Self.credential(20, status: .active, notAfter: 1000), audit: Fixture.event("est.enroll"))
            try await store.insertCredential(
                Self.credential(21, status: .superseded, notAfter: 10), audit: Fixture.event("est.enroll"))
            #expect(
                try await store.credentialCounts(now: Self.now) == [
                    .active: 1, .superseded: 1, .revoked: 9, .expired: 3,
                ])
            #expect(
                try await store.credentialCounts(now: Fixture.time(0)) == [
                    .active: 2, .superseded: 2, .revoked: 9, .expired: 1,
                ])
            #expect(try await store.credentialCount() == 14)
        }
    }
}
