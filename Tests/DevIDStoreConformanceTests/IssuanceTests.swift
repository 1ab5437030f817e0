import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Issuance")
struct IssuanceTests {
    static let now = Fixture.time(100)

    /// The seed plus: `dev-2` (active) with credential 2; credentials 1 (active), 3 (revoked) and 4 (expired) of
    /// `dev-1`;
    /// claim tokens `tok` (acme, one use), `tok-used`, `tok-revoked`, `tok-expired` (expires at `now`),
    /// `tok-dev-2` (bound to dev-2) and `tok-other` (tenant other).
    static func prepare(_ store: any Store) async throws {
        try await Fixture.seed(store)
        try await store.insertDevice(Fixture.device("dev-2", state: .active), audit: nil)
        try await store.insertCredential(Fixture.credential(2, device: "dev-2"), audit: Fixture.event("est.enroll"))
        try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
        var revoked = Fixture.credential(3, device: "dev-1")
        revoked.status = .revoked
        revoked.revokedAt = Fixture.time(30)
        revoked.revocationReason = .keyCompromise
        try await store.insertCredential(revoked, audit: Fixture.event("credential.revoke"))
        var expired = Fixture.credential(4, device: "dev-1")
        expired.status = .expired
        try await store.insertCredential(expired, audit: Fixture.event("credential.expire"))
        for token in [
            Fixture.claimToken("tok", uses: 1),
            Fixture.claimToken("tok-used", uses: 0),
            Fixture.claimToken("tok-revoked", uses: 3, revoked: true),
            Fixture.claimToken("tok-expired", uses: 3, expiresAt: now),
            Fixture.claimToken("tok-dev-2", device: "dev-2", uses: 3),
            Fixture.claimToken("tok-other", tenant: "other", uses: 3),
        ] {
            try await store.insertClaimToken(token, audit: nil)
        }
    }

    static let overlapDeadline = Fixture.time(100 + 7 * 86_400)

    /// A renewal-shaped issuance for dev-1 that exercises every step.
    static func renewal() -> Issuance {
        let credential = Fixture.credential(10, device: "dev-1", createdAt: now)
        return Issuance(
            credential: credential, transition: (expected: .manufactured, next: .active), consumeToken: "tok",
            supersede: [Fixture.serial(1)], overlapDeadline: overlapDeadline, now: now,
            audit: Fixture.event("est.enroll", device: "dev-1", serial: credential.serial, at: 100))
    }

    /// A first enrollment of an unknown device that registers it.
    static func registration(_ device: Device = Fixture.device("dev-new")) -> Issuance {
        let credential = Fixture.credential(20, device: device.id.rawValue, createdAt: now)
        return Issuance(
            credential: credential, registerDevice: device, transition: (expected: .manufactured, next: .active),
            consumeToken: "tok", now: now,
            audit: Fixture.event("est.enroll", device: device.id.rawValue, serial: credential.serial, at: 100))
    }

    @Test(arguments: StoreKind.allCases)
    func everyStepIsApplied(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let auditBefore = try await Fixture.auditCount(store)
            let issuance = Self.renewal()
            try await store.recordIssuance(issuance)

            #expect(try await store.credential(serial: issuance.credential.serial) == issuance.credential)
            var device = Fixture.device("dev-1", lot: "lot-a", state: .active)
            device.lastSeen = Self.now
            #expect(try await store.device(device.id) == device)
            #expect(try await store.claimToken(id: "tok")?.usesRemaining == 0)
            var superseded = Fixture.credential(1, device: "dev-1")
            superseded.status = .superseded
            superseded.overlapDeadline = Self.overlapDeadline
            superseded.replacedBy = issuance.credential.serial
            #expect(try await store.credential(serial: Fixture.serial(1)) == superseded)
            #expect(try await store.credential(serial: Fixture.serial(3))?.status == .revoked)
            #expect(try await store.credential(serial: Fixture.serial(2))?.status == .active)

            let events = try await store.auditEvents(AuditFilter(limit: 1))
            #expect(events.map(\.serial) == [issuance.credential.serial])
            #expect(try await Fixture.auditCount(store) == auditBefore + 1)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func registersAnUnknownDevice(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let newcomer = Fixture.device("dev-new", hardwareSerial: "IDEVID-SN-1", lot: "lot-b")
            let issuance = Self.registration(newcomer)
            try await store.recordIssuance(issuance)

            var expected = newcomer
            expected.state = .active
            expected.lastSeen = Self.now
            #expect(try await store.device(newcomer.id) == expected)
            #expect(try await store.device(hardwareSerial: "IDEVID-SN-1") == expected)
            #expect(try await store.credentials(device: newcomer.id) == [issuance.credential])
            #expect(try await store.claimToken(id: "tok")?.usesRemaining == 0)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func onlyTheCredentialIsRequired(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let tokensBefore = try await store.claimTokens(tenant: nil)
            let credential = Fixture.credential(11, device: "dev-2")
            try await store.recordIssuance(
                Issuance(credential: credential, now: Fixture.time(123.456), audit: Fixture.event("est.reenroll")))

            #expect(try await store.credential(serial: credential.serial) == credential)
            let device = try #require(try await store.device(Fixture.deviceID("dev-2")))
            #expect(device.state == .active)
            // Kept to the millisecond, like every stored time.
            #expect(device.lastSeen == Date(timeIntervalSince1970: 1_790_000_123.456))
            #expect(try await store.claimTokens(tenant: nil) == tokensBefore)
            #expect(try await store.credential(serial: Fixture.serial(2))?.status == .active)
            #expect(try await store.auditEvents(AuditFilter(limit: 1)).map(\.action) == ["est.reenroll"])
        }
    }

    /// One way an issuance is refused. Every step before the failing one would succeed on its own, so
    /// "nothing changed" shows that those steps were rolled back.
    enum Refusal: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case duplicateSerial
        case duplicateFingerprint
        case unknownDevice
        case registeredIDTaken
        case registeredSerialTaken
        case registeredTenantMissing
        case registeredLotMissing
        case registeredOtherDevice
        case staleTransition
        case tokenUsedUp
        case tokenRevoked
        case tokenExpired
        case tokenUnknown
        case tokenBoundToOtherDevice
        case tokenOfOtherTenant
        case supersedeNotActive
        case supersedeExpired
        case supersedeTwice
        case supersedeUnknown
        case supersedeOtherDevice
        case supersedeItself

        var testDescription: String { rawValue }

        var issuance: Issuance {
            var renewal = IssuanceTests.renewal()
            switch self {
            case .duplicateSerial:
                renewal.credential = Fixture.credential(1, device: "dev-1", variant: 5)
            case .duplicateFingerprint:
                renewal.credential.certificateSHA256 = Fixture.credential(2, device: "dev-2").certificateSHA256
            case .unknownDevice:
                renewal.credential.deviceID = Fixture.deviceID("ghost")
                renewal.supersede = []
            case .registeredIDTaken:
                renewal.registerDevice = Fixture.device("dev-1", hardwareSerial: "HW-fresh")
            case .registeredSerialTaken:
                return IssuanceTests.registration(Fixture.device("dev-new", hardwareSerial: "HW-dev-2"))
            case .registeredTenantMissing:
                return IssuanceTests.registration(Fixture.device("dev-new", tenant: "nobody"))
            case .registeredLotMissing:
                return IssuanceTests.registration(Fixture.device("dev-new", lot: "lot-zz"))
            case .registeredOtherDevice:
                renewal.registerDevice = Fixture.device("dev-new")
            case .staleTransition:
                renewal.transition = (expected: .active, next: .active)
            case .tokenUsedUp:
                renewal.consumeToken = "tok-used"
            case .tokenRevoked:
                renewal.consumeToken = "tok-revoked"
            case .tokenExpired:
                renewal.consumeToken = "tok-expired"
            case .tokenUnknown:
                renewal.consumeToken = "tok-ghost"
            case .tokenBoundToOtherDevice:
                renewal.consumeToken = "tok-dev-2"
            case .tokenOfOtherTenant:
                renewal.consumeToken = "tok-other"
            case .supersedeNotActive:
                renewal.supersede = [Fixture.serial(3)]
            case .supersedeExpired:
                renewal.supersede = [Fixture.serial(1), Fixture.serial(4)]
            case .supersedeTwice:
                renewal.supersede = [Fixture.serial(1), Fixture.serial(1)]
            case .supersedeUnknown:
                renewal.supersede = [Fixture.serial(1), Fixture.serial(404)]
            case .supersedeOtherDevice:
                renewal.supersede = [Fixture.serial(1), Fixture.serial(2)]
            case .supersedeItself:
                renewal.supersede = [Fixture.serial(1), renewal.credential.serial]
            }
            return renewal
        }

        var code: StoreError.Code {
            switch self {
            case .duplicateSerial, .duplicateFingerprint, .registeredIDTaken, .registeredSerialTaken: .duplicate
            case .unknownDevice, .registeredTenantMissing, .registeredLotMissing, .tokenUnknown, .supersedeUnknown:
                .notFound
            default: .conflict
            }
        }
    }

    @Test(arguments: StoreKind.allCases, Refusal.allCases)
    func refusedIssuanceStoresNothing(kind: StoreKind, refusal: Refusal) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let lots = ["lot-a", "lot-b", "lot-zz"]
            let before = try await RegistrySnapshot(store, lots: lots)
            let issuance = refusal.issuance

            let error = await expectStoreError(refusal.code) { () async throws(StoreError) in
                try await store.recordIssuance(issuance)
            }
            #expect(try await RegistrySnapshot(store, lots: lots) == before)
            #expect(try await store.credential(serial: issuance.credential.serial) == before.credentials.first {
                $0.serial == issuance.credential.serial
            })
            #expect(try await store.verifyAuditChain() == nil)

            let tokenHashes = try await store.claimTokens(tenant: nil).map(\.secretHash)
            ErrorDescriptionTests.assertClean(
                error,
                of: tokenHashes + [
                    Hex.encode(issuance.credential.der), issuance.credential.certificateSHA256,
                    issuance.credential.publicKeySHA256,
                ])
        }
    }

    /// Twenty enrollments race for one thing only one of them may have. (Superseding one credential is no such
    /// thing any more: an already superseded credential may be superseded again; see
    /// `RotationTests.concurrentSupersedesOfOneCredentialAllSucceed`.)
    enum Race: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// A one-use claim token; each racer registers its own new device.
        case singleUseToken
        /// dev-1's move from manufactured to active.
        case transition

        var testDescription: String { rawValue }

        func issuance(_ racer: Int) -> Issuance {
            let audit = Fixture.event("est.enroll", reason: "racer \(racer)")
            switch self {
            case .singleUseToken:
                let device = Fixture.device("auto-\(racer)")
                return Issuance(
                    credential: Fixture.credential(100 + racer, device: device.id.rawValue), registerDevice: device,
                    transition: (expected: .manufactured, next: .active), consumeToken: "tok",
                    now: IssuanceTests.now, audit: audit)
            case .transition:
                return Issuance(
                    credential: Fixture.credential(100 + racer, device: "dev-1"),
                    transition: (expected: .manufactured, next: .active), now: IssuanceTests.now, audit: audit)
            }
        }
    }

    @Test(arguments: StoreKind.allCases, Race.allCases)
    func concurrentIssuancesHaveOneWinner(kind: StoreKind, race: Race) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let before = try await RegistrySnapshot(store)
            let results = await withTaskGroup(of: Result<Int, StoreError>.self) { group in
                for racer in 0..<20 {
                    group.addTask {
                        do throws(StoreError) {
                            try await store.recordIssuance(race.issuance(racer))
                            return .success(racer)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            #expect(
                results.allSatisfy { result in
                    if case .failure(let error) = result { return error.code == .conflict }
                    return true
                })
            let winner = try #require(winners.first)

            #expect(try await store.credentialCount() == before.credentialCount + 1)
            #expect(try await store.credential(serial: Fixture.serial(100 + winner)) != nil)
            let events = try await store.auditEvents(AuditFilter(afterSequence: before.audit.first?.sequence))
            #expect(events.map(\.reason) == ["racer \(winner)"])
            #expect(try await store.verifyAuditChain() == nil)
            switch race {
            case .singleUseToken:
                #expect(try await store.claimToken(id: "tok")?.usesRemaining == 0)
                #expect(
                    try await Fixture.allDevices(store).map(\.id.rawValue).filter { $0.hasPrefix("auto-") } == [
                        "auto-\(winner)"
                    ])
            case .transition:
                #expect(try await store.device(Fixture.deviceID("dev-1"))?.state == .active)
            }
        }
    }
}
