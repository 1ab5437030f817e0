import DevIDCore
import DevIDStore
import Foundation
import Testing

/// Store errors travel to logs and, through the server, to callers: they must never carry what was passed in.
@Suite("Secret-free errors")
struct ErrorDescriptionTests {
    static func assertClean(
        _ error: StoreError?, of secrets: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error else { return }
        let texts = [error.description, error.reason, String(reflecting: error), "\(error)"]
        for text in texts {
            #expect(!text.contains("\n"), "not one line: \(text)", sourceLocation: sourceLocation)
            for secret in secrets {
                #expect(
                    !text.lowercased().contains(secret.lowercased()), "leaks a secret: \(text)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateCredentialDoesNotLeakItsBytes(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let credential = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            var again = Fixture.credential(1, device: "dev-1", variant: 9)
            again.certificateSHA256 = credential.certificateSHA256
            let secrets = [
                Hex.encode(again.der), Data(again.der).base64EncodedString(), Hex.encode(again.der.prefix(16)),
                again.der.map(String.init).joined(separator: ", "), again.certificateSHA256,
            ]
            let error = await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertCredential(again, audit: Fixture.event("est.enroll"))
            }
            Self.assertClean(error, of: secrets)

            var orphan = Fixture.credential(2, device: "ghost")
            orphan.der = Fixture.der(2, variant: 3)
            let orphanError = await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertCredential(orphan, audit: Fixture.event("est.enroll"))
            }
            Self.assertClean(orphanError, of: [Hex.encode(orphan.der), orphan.certificateSHA256])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateTokenDoesNotLeakItsHash(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let token = Fixture.claimToken("tok-1", secret: "correct horse battery staple")
            try await store.insertClaimToken(token, audit: nil)
            let secrets = [token.secretHash, "correct horse battery staple"]

            let claimError = await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertClaimToken(
                    Fixture.claimToken("tok-2", secret: "correct horse battery staple"), audit: nil)
            }
            Self.assertClean(claimError, of: secrets)

            let admin = AdminToken(id: "adm", secretHash: token.secretHash, createdAt: Fixture.time(1))
            try await store.insertAdminToken(admin, audit: nil)
            let adminError = await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertAdminToken(
                    AdminToken(id: "adm-2", secretHash: token.secretHash, createdAt: Fixture.time(2)), audit: nil)
            }
            Self.assertClean(adminError, of: secrets)

            let orphanError = await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertClaimToken(
                    Fixture.claimToken("tok-3", secret: "hunter2", tenant: "nobody"), audit: nil)
            }
            Self.assertClean(orphanError, of: [Fixture.sha256Hex(Array("hunter2".utf8)), "hunter2"])
        }
    }
}
