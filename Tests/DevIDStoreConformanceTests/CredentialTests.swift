import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Credentials")
struct CredentialTests {
    @Test(arguments: StoreKind.allCases)
    func insertAndFetch(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let first = Fixture.credential(1, device: "dev-1", createdAt: Fixture.time(10))
            let second = Fixture.credential(2, device: "dev-1", createdAt: Fixture.time(20))
            try await store.insertCredential(second, audit: Fixture.event("est.enroll", serial: second.serial))
            try await store.insertCredential(first, audit: Fixture.event("est.enroll", serial: first.serial))

            #expect(try await store.credential(serial: first.serial) == first)
            #expect(try await store.credential(serial: Fixture.serial(99)) == nil)
            #expect(try await store.credential(certificateSHA256: second.certificateSHA256) == second)
            #expect(try await store.credential(certificateSHA256: second.certificateSHA256.uppercased()) == second)
            #expect(try await store.credential(certificateSHA256: String(repeating: "0", count: 64)) == nil)
            #expect(try await store.credentials(device: Fixture.deviceID("dev-1")) == [first, second])
            #expect(try await store.credentials(device: Fixture.deviceID("ghost")) == [])
            #expect(try await store.credentialCount() == 2)
            #expect(
                try await store.auditEvents(AuditFilter(action: "est.enroll")).compactMap(\.serial) == [
                    first.serial, second.serial,
                ])
        }
    }

    /// What an IDevID enrollment reads first: the device by hardware serial with its credentials, as the two
    /// separate reads answer them.
    @Test(arguments: StoreKind.allCases)
    func deviceWithCredentialsByHardwareSerial(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertDevice(Fixture.device("dev-2", lot: "lot-a"), audit: nil)
            #expect(try await store.deviceWithCredentials(hardwareSerial: "HW-unknown") == nil)
            let bare = try #require(try await store.deviceWithCredentials(hardwareSerial: "HW-dev-1"))
            #expect(bare.0 == (try await store.device(Fixture.deviceID("dev-1"))))
            #expect(bare.1.isEmpty)
            for (index, offset) in [(3, 30.0), (1, 10.0), (2, 20.0)] {
                let credential = Fixture.credential(index, device: "dev-1", createdAt: Fixture.time(offset))
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            }
            try await store.insertCredential(
                Fixture.credential(9, device: "dev-2"), audit: Fixture.event("est.enroll", serial: Fixture.serial(9)))
            let found = try #require(try await store.deviceWithCredentials(hardwareSerial: "HW-dev-1"))
            #expect(found.0.id == Fixture.deviceID("dev-1"))
            #expect(found.1 == (try await store.credentials(device: Fixture.deviceID("dev-1"))))
            #expect(found.1.map(\.serial) == [Fixture.serial(1), Fixture.serial(2), Fixture.serial(3)])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateSerialKeepsOriginalAndStoresNoAudit(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let original = Fixture.credential(7, device: "dev-1")
            try await store.insertCredential(original, audit: Fixture.event("est.enroll", serial: original.serial))
            let auditBefore = try await Fixture.auditCount(store)

            // Same serial, different certificate bytes and fingerprint.
            var impostor = Fixture.credential(7, device: "dev-1", variant: 1)
            impostor.issuer = "CN=Someone Else"
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertCredential(
                    impostor, audit: Fixture.event("est.enroll", serial: impostor.serial, reason: "second insert"))
            }

            #expect(try await store.credential(serial: original.serial) == original)
            #expect(try await store.credential(certificateSHA256: impostor.certificateSHA256) == nil)
            #expect(try await store.credentialCount() == 1)
            #expect(try await Fixture.auditCount(store) == auditBefore)
            #expect(try await store.auditEvents(AuditFilter()).contains { $0.reason == "second insert" } == false)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateFingerprintAndUnknownDevice(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let original = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(original, audit: Fixture.event("est.enroll"))

            var sameCertificate = Fixture.credential(2, device: "dev-1")
            sameCertificate.certificateSHA256 = original.certificateSHA256
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertCredential(sameCertificate, audit: Fixture.event("est.enroll"))
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertCredential(
                    Fixture.credential(3, device: "ghost"), audit: Fixture.event("est.enroll"))
            }
            #expect(try await store.credentialCount() == 1)
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentDistinctSerialsAllSucceed(kind: StoreKind) async throws {
        // On PostgreSQL every insert waits for the registry's write lock and one of the sandbox's 2 pooled
        // connections: 200 at once under the whole suite's load once waited past the pool's 30 s (CI rehearsal of
        // 7872057). 50 still race for the lock and the chain.
        let count = kind == .postgres ? 50 : 200
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let failures = await withTaskGroup(of: StoreError?.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let credential = Fixture.credential(index, device: "dev-1")
                        do throws(StoreError) {
                            try await store.insertCredential(
                                credential, audit: Fixture.event("est.enroll", serial: credential.serial))
                            return nil
                        } catch {
                            return error
                        }
                    }
                }
                return await group.reduce(into: [StoreError]()) { if let error = $1 { $0.append(error) } }
            }
            #expect(failures.isEmpty, "\(failures.first.map(String.init(describing:)) ?? "")")
            #expect(try await store.credentialCount() == count)
            #expect(try await store.credentials(device: Fixture.deviceID("dev-1")).count == count)
            let events = try await store.auditEvents(AuditFilter(action: "est.enroll", limit: 1000))
            #expect(events.count == count)
            #expect(Set(events.compactMap(\.serial)).count == count)
            #expect(events.map(\.sequence) == Array((1...Int64(count)).reversed()))
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentSameSerialHasOneWinner(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let results = await withTaskGroup(of: Result<Int, StoreError>.self) { group in
                for attempt in 0..<50 {
                    group.addTask {
                        // The same serial every time; distinct bytes, so only the serial collides.
                        let credential = Fixture.credential(42, device: "dev-1", variant: attempt)
                        do throws(StoreError) {
                            try await store.insertCredential(
                                credential, audit: Fixture.event("est.enroll", reason: "attempt \(attempt)"))
                            return .success(attempt)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            let losers = results.compactMap { result -> StoreError? in
                if case .failure(let error) = result { return error }
                return nil
            }
            #expect(losers.count == 49)
            #expect(losers.allSatisfy { $0.code == .duplicate })

            let winner = try #require(winners.first)
            let stored = try #require(try await store.credential(serial: Fixture.serial(42)))
            #expect(stored.der == Fixture.der(42, variant: winner))
            #expect(try await store.credentialCount() == 1)
            let events = try await store.auditEvents(AuditFilter(action: "est.enroll"))
            #expect(events.map(\.reason) == ["attempt \(winner)"])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func statusUpdates(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let credential = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))

            try await store.updateCredentialStatus(
                serial: credential.serial, status: .superseded, revokedAt: nil, reason: nil, audit: nil)
            #expect(try await store.credential(serial: credential.serial)?.status == .superseded)

            try await store.updateCredentialStatus(
                serial: credential.serial, status: .revoked, revokedAt: Fixture.time(777), reason: .keyCompromise,
                audit: Fixture.event("credential.revoke", serial: credential.serial))
            let revoked = try #require(try await store.credential(serial: credential.serial))
            #expect(revoked.status == .revoked)
            #expect(revoked.revokedAt == Fixture.time(777))
            #expect(revoked.revocationReason == .keyCompromise)
            #expect(revoked.der == credential.der)
            #expect(try await store.auditEvents(AuditFilter(action: "credential.revoke")).count == 1)

            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.updateCredentialStatus(
                    serial: Fixture.serial(404), status: .revoked, revokedAt: Fixture.time(1), reason: .unspecified,
                    audit: Fixture.event("credential.revoke"))
            }
            #expect(try await store.auditEvents(AuditFilter(action: "credential.revoke")).count == 1)
        }
    }
}
