import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Staged rotation")
struct RotationTests {
    static let now = Fixture.time(1000)

    /// A credential of `dev-1` (or `device`) with the rotation fields and status set.
    static func credential(
        _ index: Int, device: String = "dev-1", status: CredentialStatus = .active, overlapDeadline: Date? = nil,
        confirmedAt: Date? = nil, replacedBy: Int? = nil
    ) -> Credential {
        var credential = Fixture.credential(index, device: device)
        credential.status = status
        credential.overlapDeadline = overlapDeadline
        credential.confirmedAt = confirmedAt
        credential.replacedBy = replacedBy.map(Fixture.serial)
        if status == .revoked {
            credential.revokedAt = Fixture.time(30)
            credential.revocationReason = .keyCompromise
        }
        return credential
    }

    /// An issuance of credential `index` for `dev-1` that supersedes `supersede`.
    static func issuance(
        _ index: Int, superseding supersede: [Int], overlapDeadline: Date?, reason: String = ""
    ) -> Issuance {
        let credential = Fixture.credential(index, device: "dev-1", createdAt: now)
        return Issuance(
            credential: credential, supersede: supersede.map(Fixture.serial), overlapDeadline: overlapDeadline,
            now: now, audit: Fixture.event("est.reenroll", device: "dev-1", serial: credential.serial, reason: reason))
    }

    // MARK: The credential's new fields

    @Test(arguments: StoreKind.allCases)
    func rotationFieldsAreStored(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let plain = Fixture.credential(1, device: "dev-1")
            var rotated = Self.credential(
                2, status: .superseded, overlapDeadline: Fixture.time(500), confirmedAt: Fixture.time(400),
                replacedBy: 1)
            rotated.rotationDue = true
            var precise = Fixture.credential(3, device: "dev-1")
            precise.overlapDeadline = Fixture.epoch.addingTimeInterval(0.123_456)
            precise.confirmedAt = Fixture.epoch.addingTimeInterval(7.000_9)
            for credential in [plain, rotated, precise] {
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            }

            let stored = try #require(try await store.credential(serial: plain.serial))
            #expect(stored == plain)
            #expect(stored.overlapDeadline == nil && stored.confirmedAt == nil && stored.replacedBy == nil)
            #expect(stored.rotationDue == false)
            #expect(try await store.credential(serial: rotated.serial) == rotated)
            let rounded = try #require(try await store.credential(serial: precise.serial))
            #expect(rounded.overlapDeadline == Date(timeIntervalSince1970: 1_790_000_000.123))
            #expect(rounded.confirmedAt == Date(timeIntervalSince1970: 1_790_000_007.001))
        }
    }

    @Test func credentialsWrittenBeforeRotationDecode() throws {
        let old = """
            {"serial":"7e57a","deviceID":"dev-1","kind":"ldevid","issuer":"CN=DevID Issuing CA","notBefore":0,
            "notAfter":86400,"publicKeySHA256":"aa","certificateSHA256":"bb","der":[48,130],"status":"superseded",
            "revokedAt":null,"createdAt":5}
            """
        let decoded = try JSONDecoder().decode(Credential.self, from: Data(old.utf8))
        let expected = Credential(
            serial: Fixture.serial(10), deviceID: Fixture.deviceID("dev-1"), kind: .ldevid,
            issuer: "CN=DevID Issuing CA", notBefore: Date(timeIntervalSinceReferenceDate: 0),
            notAfter: Date(timeIntervalSinceReferenceDate: 86_400), publicKeySHA256: "aa", certificateSHA256: "bb",
            der: [48, 130], status: .superseded, createdAt: Date(timeIntervalSinceReferenceDate: 5))
        #expect(decoded == expected)
        #expect(decoded.rotationDue == false && decoded.overlapDeadline == nil && decoded.replacedBy == nil)

        var full = Self.credential(
            1, status: .superseded, overlapDeadline: Fixture.time(9), confirmedAt: Fixture.time(8), replacedBy: 2)
        full.rotationDue = true
        let encoded = try JSONEncoder().encode(full)
        #expect(try JSONDecoder().decode(Credential.self, from: encoded) == full)
        let keys = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any]).keys
        #expect(Set(keys).isSuperset(of: ["overlapDeadline", "confirmedAt", "rotationDue", "replacedBy"]))

        let badSuccessor = old.replacingOccurrences(
            of: "\"createdAt\":5", with: "\"createdAt\":5,\"replacedBy\":\"xyz\"")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Credential.self, from: Data(badSuccessor.utf8)) }
    }

    // MARK: Superseding

    @Test(arguments: StoreKind.allCases)
    func supersedingRecordsDeadlineAndSuccessor(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let first = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(first, audit: Fixture.event("est.enroll"))
            let issuance = Self.issuance(2, superseding: [1], overlapDeadline: Fixture.time(5000.5))
            try await store.recordIssuance(issuance)

            var superseded = first
            superseded.status = .superseded
            superseded.overlapDeadline = Fixture.time(5000.5)
            superseded.replacedBy = issuance.credential.serial
            #expect(try await store.credential(serial: first.serial) == superseded)
            let successor = try #require(try await store.credential(serial: issuance.credential.serial))
            #expect(successor == issuance.credential)
            #expect(successor.status == .active && successor.replacedBy == nil && successor.overlapDeadline == nil)
        }
    }

    /// The deadlines of two issuances that both supersede credential 1, and the one it keeps.
    enum Resupersede: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case earlierFirst, laterFirst, firstWithout, secondWithout, neither

        var testDescription: String { rawValue }

        var deadlines: (first: Date?, second: Date?, kept: Date?) {
            let early = Fixture.time(2000)
            let late = Fixture.time(9000)
            return switch self {
            case .earlierFirst: (early, late, early)
            case .laterFirst: (late, early, early)
            case .firstWithout: (nil, early, early)
            case .secondWithout: (early, nil, early)
            case .neither: (nil, nil, nil)
            }
        }
    }

    @Test(arguments: StoreKind.allCases, Resupersede.allCases)
    func supersedingAgainKeepsTheEarlierDeadline(kind: StoreKind, scenario: Resupersede) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            let (first, second, kept) = scenario.deadlines
            try await store.recordIssuance(Self.issuance(2, superseding: [1], overlapDeadline: first))
            let auditBefore = try await Fixture.auditCount(store)
            // The device comes back with its old certificate during the overlap: 1 is superseded again, by 3, and
            // its unseen successor 2 with it (as the server asks). Without 2 it is refused: a renewal decided before
            // 2 was issued (RotationTests.concurrentSupersedesOfOneCredentialHaveOneWinner).
            let stale = await #expect(throws: StoreError.self) {
                try await store.recordIssuance(Self.issuance(3, superseding: [1], overlapDeadline: second))
            }
            #expect(stale?.code == .conflict)
            #expect(try await Fixture.auditCount(store) == auditBefore)
            try await store.recordIssuance(Self.issuance(3, superseding: [2, 1], overlapDeadline: second))

            let old = try #require(try await store.credential(serial: Fixture.serial(1)))
            #expect(old.status == .superseded)
            #expect(old.overlapDeadline == kept)
            #expect(old.replacedBy == Fixture.serial(3))
            let lost = try #require(try await store.credential(serial: Fixture.serial(2)))
            #expect(lost.status == .superseded && lost.replacedBy == Fixture.serial(3))
            #expect(try await Fixture.auditCount(store) == auditBefore + 1)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func supersedingAnActiveAndASupersededOneTogether(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            try await store.recordIssuance(Self.issuance(2, superseding: [1], overlapDeadline: Fixture.time(2000)))
            // The server gives up the unconfirmed successor 2 and re-points 1 at the newest credential.
            try await store.recordIssuance(Self.issuance(3, superseding: [2, 1], overlapDeadline: Fixture.time(3000)))

            let old = try #require(try await store.credential(serial: Fixture.serial(1)))
            #expect(old.status == .superseded && old.overlapDeadline == Fixture.time(2000))
            #expect(old.replacedBy == Fixture.serial(3))
            let lost = try #require(try await store.credential(serial: Fixture.serial(2)))
            #expect(lost.status == .superseded && lost.overlapDeadline == Fixture.time(3000))
            #expect(lost.replacedBy == Fixture.serial(3))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentSupersedesOfOneCredentialHaveOneWinner(kind: StoreKind) async throws {
        // Twenty renewals of one credential at once, each decided on a read that saw it `active` (two
        // simplereenrolls with the same certificate). Before, all twenty committed: the credential pointed at the
        // last, and the other nineteen LDevIDs stayed `active`, never superseded and so never revoked.
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            let before = try await RegistrySnapshot(store)
            let outcomes = await withTaskGroup(of: (Int, StoreError?).self) { group in
                for racer in 0..<20 {
                    group.addTask {
                        do throws(StoreError) {
                            try await store.recordIssuance(
                                Self.issuance(
                                    100 + racer, superseding: [1], overlapDeadline: Fixture.time(5000),
                                    reason: "racer \(racer)"))
                            return (racer, nil)
                        } catch {
                            return (racer, error)
                        }
                    }
                }
                return await group.reduce(into: [(Int, StoreError?)]()) { $0.append($1) }
            }
            let winners = outcomes.filter { $0.1 == nil }.map(\.0)
            #expect(winners.count == 1, "\(outcomes)")
            let losers = outcomes.compactMap(\.1)
            #expect(losers.allSatisfy { $0.code == .conflict && $0.reason.contains("was renewed meanwhile") }, "\(losers)")
            let winner = try #require(winners.first)
            let old = try #require(try await store.credential(serial: Fixture.serial(1)))
            #expect(old.status == .superseded)
            #expect(old.replacedBy == Fixture.serial(100 + winner))
            #expect(try await store.credentialCount() == before.credentialCount + 1, "nothing of the losers stored")
            #expect(try await Fixture.auditCount(store) == before.audit.count + 1)
            let active = try await store.credentials(device: Fixture.deviceID("dev-1")).filter { $0.status == .active }
            #expect(active.map(\.serial) == [Fixture.serial(100 + winner)], "one active LDevID")
            #expect(try await store.verifyAuditChain() == nil)

            // The retry the overlap allows supersedes the successor with it, and is not refused.
            try await store.recordIssuance(
                Self.issuance(200, superseding: [100 + winner, 1], overlapDeadline: Fixture.time(5000), reason: "retry"))
            #expect(try await store.credential(serial: Fixture.serial(1))?.replacedBy == Fixture.serial(200))
            #expect(try await store.credential(serial: Fixture.serial(100 + winner))?.status == .superseded)
        }
    }

    // MARK: Confirmation

    @Test(arguments: StoreKind.allCases)
    func firstConfirmationWins(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let credential = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))

            let first = try await store.confirmCredential(
                serial: credential.serial, at: Fixture.time(500),
                audit: Fixture.event("rotation.confirm", serial: credential.serial, reason: "first"))
            #expect(first)
            var confirmed = credential
            confirmed.confirmedAt = Fixture.time(500)
            #expect(try await store.credential(serial: credential.serial) == confirmed)
            #expect(try await store.auditEvents(AuditFilter(limit: 1)).map(\.reason) == ["first"])

            let before = try await RegistrySnapshot(store)
            let again = try await store.confirmCredential(
                serial: credential.serial, at: Fixture.time(600),
                audit: Fixture.event("rotation.confirm", serial: credential.serial, reason: "again"))
            #expect(!again)
            #expect(try await RegistrySnapshot(store) == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func confirmationWithoutAuditEvent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            let auditBefore = try await Fixture.auditCount(store)
            #expect(try await store.confirmCredential(serial: Fixture.serial(1), at: Fixture.time(50), audit: nil))
            #expect(try await store.credential(serial: Fixture.serial(1))?.confirmedAt == Fixture.time(50))
            #expect(try await Fixture.auditCount(store) == auditBefore)
        }
    }

    @Test(arguments: StoreKind.allCases, [CredentialStatus.superseded, .revoked, .expired])
    func onlyActiveCredentialsAreConfirmed(kind: StoreKind, status: CredentialStatus) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(
                Self.credential(1, status: status, overlapDeadline: Fixture.time(5000)),
                audit: Fixture.event("est.enroll"))
            let before = try await RegistrySnapshot(store)
            let confirmed = try await store.confirmCredential(
                serial: Fixture.serial(1), at: Fixture.time(500), audit: Fixture.event("rotation.confirm"))
            #expect(!confirmed)
            #expect(try await RegistrySnapshot(store) == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func confirmingAnUnknownSerialIsNotFound(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            let before = try await RegistrySnapshot(store)
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.confirmCredential(
                    serial: Fixture.serial(404), at: Fixture.time(500), audit: Fixture.event("rotation.confirm"))
            }
            #expect(try await RegistrySnapshot(store) == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentConfirmationsHaveOneWinner(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
            let auditBefore = try await Fixture.auditCount(store)
            let results = await withTaskGroup(of: Result<(Int, Bool), StoreError>.self) { group in
                for racer in 0..<20 {
                    group.addTask {
                        do throws(StoreError) {
                            let first = try await store.confirmCredential(
                                serial: Fixture.serial(1), at: Fixture.time(500 + Double(racer)),
                                audit: Fixture.event("rotation.confirm", reason: "racer \(racer)"))
                            return .success((racer, first))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let outcomes = results.compactMap { try? $0.get() }
            #expect(outcomes.count == 20)
            let winners = outcomes.filter(\.1).map(\.0)
            #expect(winners.count == 1)
            let winner = try #require(winners.first)
            #expect(
                try await store.credential(serial: Fixture.serial(1))?.confirmedAt == Fixture.time(500 + Double(winner))
            )
            #expect(try await Fixture.auditCount(store) == auditBefore + 1)
            #expect(try await store.auditEvents(AuditFilter(limit: 1)).map(\.reason) == ["racer \(winner)"])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    // MARK: Superseded credentials due for revocation

    @Test(arguments: StoreKind.allCases)
    func supersededDueByDeadlineOrConfirmedSuccessor(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let confidence: TimeInterval = 300
            let credentials = [
                // Due: deadline passed, and deadline exactly now.
                Self.credential(1, status: .superseded, overlapDeadline: Fixture.time(900)),
                Self.credential(2, status: .superseded, overlapDeadline: Fixture.time(1000)),
                // Due: successor 33 confirmed exactly `confidence` ago; 0x10's successor long ago, no deadline.
                Self.credential(3, status: .superseded, overlapDeadline: Fixture.time(9000), replacedBy: 33),
                Self.credential(33, confirmedAt: Fixture.time(700)),
                Self.credential(16, status: .superseded, replacedBy: 48),
                Self.credential(48, confirmedAt: Fixture.time(100)),
                // Not due: successor confirmed a millisecond too late; successor unconfirmed; no successor and
                // no deadline; a successor that does not exist; deadline a millisecond ahead.
                Self.credential(4, status: .superseded, overlapDeadline: Fixture.time(9000), replacedBy: 34),
                Self.credential(34, confirmedAt: Fixture.time(700.001)),
                Self.credential(5, status: .superseded, replacedBy: 35),
                Self.credential(35),
                Self.credential(6, status: .superseded),
                Self.credential(7, status: .superseded, replacedBy: 404),
                Self.credential(8, status: .superseded, overlapDeadline: Fixture.time(1000.001)),
                // Not superseded: never due, whatever their fields say.
                Self.credential(9, overlapDeadline: Fixture.time(900)),
                Self.credential(10, status: .revoked, overlapDeadline: Fixture.time(900)),
                Self.credential(11, status: .expired, overlapDeadline: Fixture.time(900)),
                Self.credential(12, status: .superseded, replacedBy: 36),
                Self.credential(36, status: .revoked, confirmedAt: Fixture.time(100)),
            ]
            for credential in credentials.shuffled() {
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            }
            let byIndex = Dictionary(uniqueKeysWithValues: credentials.map { ($0.serial, $0) })

            // 12's successor was revoked after its confirmation: the old one is still released by it.
            // Serial order is text order: 7e571 < 7e5710 (16) < 7e572 < 7e573 < 7e57c (12).
            let expected = [1, 16, 2, 3, 12].map { byIndex[Fixture.serial($0)]! }
            let due = try await store.supersededDue(now: Self.now, confidence: confidence, limit: 100)
            #expect(due.map(\.serial) == expected.map(\.serial))
            #expect(due == expected)
            #expect(
                try await store.supersededDue(now: Self.now, confidence: confidence, limit: 2).map(\.serial) == [
                    Fixture.serial(1), Fixture.serial(16),
                ])
            #expect(try await store.supersededDue(now: Self.now, confidence: confidence, limit: 0) == [])
            #expect(try await store.supersededDue(now: Fixture.time(0), confidence: confidence, limit: 100) == [])
        }
    }

    // MARK: Revoking a list of credentials

    /// dev-1 with 1 (active), 2 (superseded) and 3 (revoked at 30 for key compromise).
    static func prepareRevocation(_ store: any Store) async throws {
        try await Fixture.seed(store)
        for credential in [
            Self.credential(1), Self.credential(2, status: .superseded, overlapDeadline: Fixture.time(9000)),
            Self.credential(3, status: .revoked),
        ] {
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func revokeCredentialsSkipsRevokedOnes(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepareRevocation(store)
            let auditBefore = try await Fixture.auditCount(store)
            let changed = try await store.revokeCredentials(
                [Fixture.serial(1), Fixture.serial(2), Fixture.serial(3), Fixture.serial(2)], reason: .superseded,
                at: Fixture.time(500), audit: Fixture.event("rotation.revoke", reason: "sweep"))
            #expect(changed == 2)
            for index in [1, 2] {
                var expected = Self.credential(
                    index, status: index == 1 ? .active : .superseded,
                    overlapDeadline: index == 1 ? nil : Fixture.time(9000))
                expected.status = .revoked
                expected.revokedAt = Fixture.time(500)
                expected.revocationReason = .superseded
                #expect(try await store.credential(serial: Fixture.serial(index)) == expected)
            }
            #expect(try await store.credential(serial: Fixture.serial(3)) == Self.credential(3, status: .revoked))
            #expect(try await Fixture.auditCount(store) == auditBefore + 1)
            #expect(try await store.auditEvents(AuditFilter(limit: 1)).map(\.reason) == ["sweep"])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases, [[3], [3, 3], []])
    func revokeCredentialsWithNothingToDoWritesNoAudit(kind: StoreKind, indices: [Int]) async throws {
        try await withStore(kind) { store in
            try await Self.prepareRevocation(store)
            let before = try await RegistrySnapshot(store)
            let changed = try await store.revokeCredentials(
                indices.map(Fixture.serial), reason: .superseded, at: Fixture.time(500),
                audit: Fixture.event("rotation.revoke"))
            #expect(changed == 0)
            #expect(try await RegistrySnapshot(store) == before)
        }
    }

    @Test(arguments: StoreKind.allCases, [[1, 404], [404, 1], [404]])
    func revokeCredentialsWithAnUnknownSerialChangesNothing(kind: StoreKind, indices: [Int]) async throws {
        try await withStore(kind) { store in
            try await Self.prepareRevocation(store)
            let before = try await RegistrySnapshot(store)
            let error = await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.revokeCredentials(
                    indices.map(Fixture.serial), reason: .keyCompromise, at: Fixture.time(500),
                    audit: Fixture.event("rotation.revoke"))
            }
            #expect(try await RegistrySnapshot(store) == before)
            ErrorDescriptionTests.assertClean(error, of: [Fixture.serial(404).rawValue])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentOverlappingRevocationsCountEachCredentialOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            for index in 0..<75 {
                try await store.insertCredential(
                    Fixture.credential(index, device: "dev-1"), audit: Fixture.event("est.enroll"))
            }
            let auditBefore = try await Fixture.auditCount(store)
            let counts = await withTaskGroup(of: Int?.self) { group in
                for batch in 0..<10 {
                    group.addTask {
                        // Batches of 30 that overlap their neighbours by 25.
                        let serials = (batch * 5..<batch * 5 + 30).map(Fixture.serial)
                        return try? await store.revokeCredentials(
                            serials, reason: .cessationOfOperation, at: Fixture.time(500),
                            audit: Fixture.event("rotation.revoke", reason: "batch \(batch)"))
                    }
                }
                return await group.reduce(into: [Int?]()) { $0.append($1) }
            }
            #expect(counts.allSatisfy { $0 != nil })
            let changed = counts.compactMap { $0 }
            #expect(changed.reduce(0, +) == 75)
            #expect(try await Fixture.auditCount(store) == auditBefore + changed.filter { $0 > 0 }.count)
            let credentials = try await store.credentials(device: Fixture.deviceID("dev-1"))
            #expect(credentials.count == 75)
            #expect(credentials.allSatisfy { $0.status == .revoked && $0.revocationReason == .cessationOfOperation })
            #expect(try await store.verifyAuditChain() == nil)
        }
    }
}
