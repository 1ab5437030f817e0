import DevIDCore
import DevIDStore
import Foundation
import Testing

/// Revocation by scope, its preview, and rotation campaigns, over a fleet with neighbours in every direction.
@Suite("Scopes: revocation and rotation campaigns")
struct ScopeTests {
    static let now = Fixture.time(1000)

    /// The fleet. Tenant acme: lot-a holds `dev-1` (manufactured), `a-active`, `a-decom` (decommissioned) and
    /// `a-revoked`; lot-b holds `b-1`; `n-1` (suspended) and `n-2` (manufactured, no credentials) have no lot.
    /// Tenant other: lot-o holds `o-1`; `o-2` has no lot.
    ///
    /// Credentials (index: device, kind and status): 1 dev-1; 10 a-active; 11 a-active superseded; 12 a-active
    /// revoked; 13 a-active, past its notAfter; 14 a-active IDevID; 20 a-decom; 30 a-revoked; 40 b-1; 50 n-1;
    /// 60 o-1; 70 o-2, expiring an hour after `now`. All LDevID and active unless said otherwise.
    static func prepare(_ store: any Store) async throws {
        try await Fixture.seed(store)
        try await store.createLot(Fixture.lot("lot-o", tenant: "other"))
        let devices = [
            Fixture.device("a-active", lot: "lot-a", state: .active),
            Fixture.device("a-decom", lot: "lot-a", state: .decommissioned),
            Fixture.device("a-revoked", lot: "lot-a", state: .revoked),
            Fixture.device("b-1", lot: "lot-b", state: .active),
            Fixture.device("n-1", state: .suspended),
            Fixture.device("n-2"),
            Fixture.device("o-1", tenant: "other", lot: "lot-o", state: .active),
            Fixture.device("o-2", tenant: "other", state: .active),
        ]
        for device in devices { try await store.insertDevice(device, audit: nil) }
        for credential in fleetCredentials {
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
        }
    }

    static var fleetCredentials: [Credential] {
        func credential(_ index: Int, _ device: String, _ status: CredentialStatus = .active) -> Credential {
            var credential = Fixture.credential(index, device: device)
            credential.status = status
            return credential
        }
        var revoked = credential(12, "a-active", .revoked)
        revoked.revokedAt = Fixture.time(30)
        revoked.revocationReason = .keyCompromise
        var lapsed = credential(13, "a-active")
        lapsed.notAfter = Fixture.time(999)
        var birth = credential(14, "a-active")
        birth.kind = .idevid
        birth.issuer = "CN=Factory CA,O=maker"
        var expiringSoon = credential(70, "o-2")
        expiringSoon.notAfter = Fixture.time(1000 + 3600)
        return [
            credential(1, "dev-1"), credential(10, "a-active"), credential(11, "a-active", .superseded), revoked,
            lapsed, birth, credential(20, "a-decom"), credential(30, "a-revoked"), credential(40, "b-1"),
            credential(50, "n-1"), credential(60, "o-1"), expiringSoon,
        ]
    }

    static func counts(_ devices: Int, _ credentials: Int) -> BlastRadius.Counts {
        BlastRadius.Counts(devices: devices, credentials: credentials)
    }

    /// One scope of the fleet, what revoking it at `now` changes, and what a campaign over it flags.
    enum Case: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case device, lotA, lotB, tenantAcme, tenantOther, serial, revokedSerial, lapsedSerial, birthSerial
        case expiringSoon, expiringAll, emptyTenant

        var testDescription: String { rawValue }

        var scope: CredentialScope {
            switch self {
            case .device: .device(Fixture.deviceID("a-active"))
            case .lotA: .lot(Fixture.lotID("lot-a"))
            case .lotB: .lot(Fixture.lotID("lot-b"))
            case .tenantAcme: .tenant(Fixture.tenantID("acme"))
            case .tenantOther: .tenant(Fixture.tenantID("other"))
            case .serial: .serial(Fixture.serial(10))
            case .revokedSerial: .serial(Fixture.serial(12))
            case .lapsedSerial: .serial(Fixture.serial(13))
            case .birthSerial: .serial(Fixture.serial(14))
            case .expiringSoon: .expiringBefore(Fixture.time(1000 + 7200))
            case .expiringAll: .expiringBefore(Fixture.time(40 * 86_400))
            case .emptyTenant: .tenant(Fixture.tenantID("empty"))
            }
        }

        /// Credentials revoked and devices moved to `revoked`.
        var revokes: (credentials: Set<Int>, devices: Set<String>) {
            switch self {
            case .device: ([10, 11, 14], ["a-active"])
            case .lotA: ([1, 10, 11, 14, 20, 30], ["dev-1", "a-active"])
            case .lotB: ([40], ["b-1"])
            case .tenantAcme: ([1, 10, 11, 14, 20, 30, 40, 50], ["dev-1", "a-active", "b-1", "n-1", "n-2"])
            case .tenantOther: ([60, 70], ["o-1", "o-2"])
            case .serial: ([10], [])
            case .revokedSerial, .lapsedSerial, .emptyTenant: ([], [])
            case .birthSerial: ([14], [])
            case .expiringSoon: ([70], [])
            case .expiringAll: ([1, 10, 20, 30, 40, 50, 60, 70], [])
            }
        }

        var radius: BlastRadius {
            let counts = ScopeTests.counts
            let acme = Fixture.tenantID("acme")
            let other = Fixture.tenantID("other")
            return switch self {
            case .device:
                BlastRadius(devices: 1, credentials: 3, byTenant: [acme: counts(1, 3)], byLot: ["lot-a": counts(1, 3)])
            case .lotA:
                // a-decom and a-revoked do not move, but each loses a credential.
                BlastRadius(devices: 4, credentials: 6, byTenant: [acme: counts(4, 6)], byLot: ["lot-a": counts(4, 6)])
            case .lotB:
                BlastRadius(devices: 1, credentials: 1, byTenant: [acme: counts(1, 1)], byLot: ["lot-b": counts(1, 1)])
            case .tenantAcme:
                // n-2 has no credential but moves.
                BlastRadius(
                    devices: 7, credentials: 8, byTenant: [acme: counts(7, 8)],
                    byLot: ["lot-a": counts(4, 6), "lot-b": counts(1, 1), "-": counts(2, 1)])
            case .tenantOther:
                BlastRadius(
                    devices: 2, credentials: 2, byTenant: [other: counts(2, 2)],
                    byLot: ["lot-o": counts(1, 1), "-": counts(1, 1)])
            case .serial, .birthSerial:
                BlastRadius(devices: 1, credentials: 1, byTenant: [acme: counts(1, 1)], byLot: ["lot-a": counts(1, 1)])
            case .revokedSerial, .lapsedSerial, .emptyTenant:
                BlastRadius()
            case .expiringSoon:
                BlastRadius(devices: 1, credentials: 1, byTenant: [other: counts(1, 1)], byLot: ["-": counts(1, 1)])
            case .expiringAll:
                BlastRadius(
                    devices: 8, credentials: 8, byTenant: [acme: counts(6, 6), other: counts(2, 2)],
                    byLot: ["lot-a": counts(4, 4), "lot-b": counts(1, 1), "lot-o": counts(1, 1), "-": counts(2, 2)])
            }
        }

        /// Credentials a campaign over the scope at `now` flags: active, unexpired LDevIDs.
        var flags: Set<Int> {
            switch self {
            case .device: [10]
            case .lotA: [1, 10, 20, 30]
            case .lotB: [40]
            case .tenantAcme: [1, 10, 20, 30, 40, 50]
            case .tenantOther: [60, 70]
            case .serial: [10]
            case .revokedSerial, .lapsedSerial, .birthSerial, .emptyTenant: []
            case .expiringSoon: [70]
            case .expiringAll: [1, 10, 20, 30, 40, 50, 60, 70]
            }
        }
    }

    static func prepare(_ store: any Store, for scenario: Case) async throws {
        try await prepare(store)
        if scenario == .emptyTenant { try await store.createTenant(Fixture.tenant("empty"), audit: nil) }
    }

    @Test(arguments: StoreKind.allCases, Case.allCases)
    func blastRadiusPreviewsWithoutChanging(kind: StoreKind, scenario: Case) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store, for: scenario)
            let before = try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"])
            #expect(try await store.blastRadius(scenario.scope, now: Self.now) == scenario.radius)
            #expect(try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"]) == before)
        }
    }

    @Test(arguments: StoreKind.allCases, Case.allCases)
    func revokeChangesExactlyThePreview(kind: StoreKind, scenario: Case) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store, for: scenario)
            let before = try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"])
            let preview = try await store.blastRadius(scenario.scope, now: Self.now)
            let changed = try await store.revoke(
                scenario.scope, reason: .keyCompromise, at: Self.now,
                audit: Fixture.event("credential.revoke.scope", reason: scenario.rawValue))
            #expect(changed == preview)
            #expect(changed == scenario.radius)

            // Every credential and device not named stays exactly as it was: the neighbours.
            let (credentials, devices) = scenario.revokes
            var expected = before
            expected.credentials = before.credentials.map { credential in
                guard credentials.contains(where: { Fixture.serial($0) == credential.serial }) else {
                    return credential
                }
                var revoked = credential
                revoked.status = .revoked
                revoked.revokedAt = Self.now
                revoked.revocationReason = .keyCompromise
                return revoked
            }
            expected.devices = before.devices.map { device in
                var device = device
                if devices.contains(device.id.rawValue) { device.state = .revoked }
                return device
            }
            let after = try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"])
            expected.audit = after.audit
            #expect(after == expected)
            #expect(after.audit.count == before.audit.count + 1)
            #expect(after.audit.first?.reason == scenario.rawValue)
            #expect(try await store.verifyAuditChain() == nil)

            // Again: nothing left to change, and the attempt is still on the trail.
            let again = try await store.revoke(
                scenario.scope, reason: .keyCompromise, at: Self.now, audit: Fixture.event("credential.revoke.scope"))
            #expect(again == BlastRadius())
            #expect(try await Fixture.auditCount(store) == before.audit.count + 2)
        }
    }

    @Test(arguments: StoreKind.allCases, Case.allCases)
    func campaignsFlagActiveLDevIDs(kind: StoreKind, scenario: Case) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store, for: scenario)
            let before = try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"])
            // The dry run's count, in one query, is what the campaign then flags; it changes nothing.
            #expect(try await store.rotationCandidates(scenario.scope, now: Self.now) == scenario.flags.count)
            #expect(try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"]) == before)
            let flagged = try await store.markRotationDue(
                scenario.scope, at: Self.now, audit: Fixture.event("rotation.campaign", reason: scenario.rawValue))
            #expect(flagged == scenario.flags.count)

            var expected = before
            expected.credentials = before.credentials.map { credential in
                var credential = credential
                if scenario.flags.contains(where: { Fixture.serial($0) == credential.serial }) {
                    credential.rotationDue = true
                }
                return credential
            }
            let after = try await RegistrySnapshot(store, lots: ["lot-a", "lot-b", "lot-o"])
            expected.audit = after.audit
            #expect(after == expected)
            #expect(after.audit.count == before.audit.count + 1)

            // Flagged ones are not counted again.
            #expect(try await store.rotationCandidates(scenario.scope, now: Self.now) == 0)
            #expect(
                try await store.markRotationDue(scenario.scope, at: Self.now, audit: Fixture.event("rotation.campaign"))
                    == 0)
            #expect(try await Fixture.auditCount(store) == before.audit.count + 2)
        }
    }

    /// A scope that names something missing, for each kind of name.
    enum Missing: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case device, lot, tenant, serial

        var testDescription: String { rawValue }

        var scope: CredentialScope {
            switch self {
            case .device: .device(Fixture.deviceID("ghost"))
            case .lot: .lot(Fixture.lotID("lot-zz"))
            case .tenant: .tenant(Fixture.tenantID("nobody"))
            case .serial: .serial(Fixture.serial(404))
            }
        }
    }

    @Test(arguments: StoreKind.allCases, Missing.allCases)
    func missingScopeIsNotFoundAndChangesNothing(kind: StoreKind, missing: Missing) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let lots = ["lot-a", "lot-b", "lot-o", "lot-zz"]
            let before = try await RegistrySnapshot(store, lots: lots)
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.blastRadius(missing.scope, now: Self.now)
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.revoke(
                    missing.scope, reason: .keyCompromise, at: Self.now, audit: Fixture.event("credential.revoke.scope")
                )
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.markRotationDue(missing.scope, at: Self.now, audit: Fixture.event("rotation.campaign"))
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.rotationCandidates(missing.scope, now: Self.now)
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.rotationProgress(missing.scope, now: Self.now, unreachableAfter: 3600)
            }
            #expect(try await RegistrySnapshot(store, lots: lots) == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentRevocationsOfOneLotChangeItOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let auditBefore = try await Fixture.auditCount(store)
            let scope = CredentialScope.lot(Fixture.lotID("lot-a"))
            let results = await withTaskGroup(of: BlastRadius?.self) { group in
                for racer in 0..<10 {
                    group.addTask {
                        try? await store.revoke(
                            scope, reason: .keyCompromise, at: Self.now,
                            audit: Fixture.event("credential.revoke.scope", reason: "racer \(racer)"))
                    }
                }
                return await group.reduce(into: [BlastRadius?]()) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0 != nil })
            let changes = results.compactMap { $0 }.filter { $0 != BlastRadius() }
            #expect(changes == [Case.lotA.radius])
            #expect(try await Fixture.auditCount(store) == auditBefore + 10)
            #expect(try await store.blastRadius(scope, now: Self.now) == BlastRadius())
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentCampaignsFlagEachCredentialOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let scopes: [CredentialScope] = [
                .tenant(Fixture.tenantID("acme")), .lot(Fixture.lotID("lot-a")), .expiringBefore(Fixture.time(1e7)),
                .device(Fixture.deviceID("a-active")),
            ]
            let flagged = await withTaskGroup(of: Int?.self) { group in
                for racer in 0..<12 {
                    group.addTask {
                        try? await store.markRotationDue(
                            scopes[racer % scopes.count], at: Self.now, audit: Fixture.event("rotation.campaign"))
                    }
                }
                return await group.reduce(into: [Int?]()) { $0.append($1) }
            }
            #expect(flagged.allSatisfy { $0 != nil })
            #expect(flagged.compactMap { $0 }.reduce(0, +) == Case.expiringAll.flags.count)
            let progress = try await store.rotationProgress(nil, now: Self.now, unreachableAfter: 3600)
            #expect(progress.due == Case.expiringAll.flags.count)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    // MARK: Rotation progress

    @Test(arguments: StoreKind.allCases)
    func rotationProgressSortsFlaggedCredentials(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.prepare(store)
            let acme = CredentialScope.tenant(Fixture.tenantID("acme"))
            let other = CredentialScope.tenant(Fixture.tenantID("other"))
            #expect(try await store.markRotationDue(acme, at: Self.now, audit: Fixture.event("rotation.campaign")) == 6)
            #expect(
                try await store.rotationProgress(other, now: Self.now, unreachableAfter: 3600) == RotationProgress())

            // 10 and 40 are replaced; 40 is then revoked; 30 is revoked without a successor.
            for (old, device) in [(10, "a-active"), (40, "b-1")] {
                try await store.recordIssuance(
                    Issuance(
                        credential: Fixture.credential(100 + old, device: device), supersede: [Fixture.serial(old)],
                        overlapDeadline: Fixture.time(5000), now: Self.now, audit: Fixture.event("est.reenroll")))
            }
            _ = try await store.revokeCredentials(
                [Fixture.serial(40)], reason: .superseded, at: Self.now, audit: Fixture.event("rotation.revoke"))
            _ = try await store.revokeCredentials(
                [Fixture.serial(30)], reason: .keyCompromise, at: Self.now, audit: Fixture.event("credential.revoke"))
            // Still active: 1 (dev-1 seen 100 s ago), 20 (a-decom never seen), 50 (n-1 seen 7200 s ago).
            try await store.recordSeen(Fixture.deviceID("dev-1"), at: Fixture.time(900))
            try await store.recordSeen(Fixture.deviceID("n-1"), at: Fixture.time(1000 - 7200))

            #expect(
                try await store.rotationProgress(acme, now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 6, rotated: 2, pending: 1, unreachable: 2))
            // Seen exactly `unreachableAfter` ago still counts as reachable.
            #expect(
                try await store.rotationProgress(acme, now: Self.now, unreachableAfter: 7200)
                    == RotationProgress(due: 6, rotated: 2, pending: 2, unreachable: 1))
            #expect(
                try await store.rotationProgress(nil, now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 6, rotated: 2, pending: 1, unreachable: 2))
            #expect(
                try await store.rotationProgress(.lot(Fixture.lotID("lot-a")), now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 4, rotated: 1, pending: 1, unreachable: 1))
            #expect(
                try await store.rotationProgress(.serial(Fixture.serial(10)), now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 1, rotated: 1))
            #expect(
                try await store.rotationProgress(.serial(Fixture.serial(110)), now: Self.now, unreachableAfter: 3600)
                    == RotationProgress())

            #expect(
                try await store.markRotationDue(other, at: Self.now, audit: Fixture.event("rotation.campaign")) == 2)
            #expect(
                try await store.rotationProgress(nil, now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 8, rotated: 2, pending: 1, unreachable: 4))
            #expect(
                try await store.rotationProgress(
                    .expiringBefore(Fixture.time(1000 + 7200)), now: Self.now, unreachableAfter: 3600)
                    == RotationProgress(due: 1, unreachable: 1))
        }
    }

    // MARK: Encoding

    @Test func scopesEncodeAsOneKeyObjects() throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let vectors: [(CredentialScope, String)] = [
            (.device(Fixture.deviceID("dev-1")), #"{"device":"dev-1"}"#),
            (.lot(Fixture.lotID("lot-7")), #"{"lot":"lot-7"}"#),
            (.tenant(Fixture.tenantID("acme")), #"{"tenant":"acme"}"#),
            (.serial(Fixture.serial(10)), #"{"serial":"7e57a"}"#),
            (.expiringBefore(Fixture.epoch), #"{"expiringBefore":1790000000}"#),
        ]
        for (scope, json) in vectors {
            #expect(String(decoding: try encoder.encode(scope), as: UTF8.self) == json)
            #expect(try decoder.decode(CredentialScope.self, from: Data(json.utf8)) == scope)
        }
        for invalid in [
            #"{}"#, #"{"device":"dev-1","lot":"lot-7"}"#, #"{"colour":"red"}"#, #"{"device":"no spaces"}"#,
            #"{"serial":"xyz"}"#, #""dev-1""#,
        ] {
            #expect(throws: DecodingError.self) { try decoder.decode(CredentialScope.self, from: Data(invalid.utf8)) }
        }
        #expect(CredentialScope.lot(Fixture.lotID("lot-7")).description == "lot lot-7")
    }

    @Test func blastRadiusEncodesTenantsAsObjectKeys() throws {
        let radius = Case.tenantOther.radius
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(radius), as: UTF8.self)
        #expect(
            json == #"{"byLot":{"-":{"credentials":1,"devices":1},"lot-o":{"credentials":1,"devices":1}},"#
                + #""byTenant":{"other":{"credentials":2,"devices":2}},"credentials":2,"devices":2}"#)
        #expect(try JSONDecoder().decode(BlastRadius.self, from: Data(json.utf8)) == radius)
        let badTenant = json.replacingOccurrences(of: #""other""#, with: #""not a tenant""#)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(BlastRadius.self, from: Data(badTenant.utf8)) }

        let progress = RotationProgress(due: 8, rotated: 2, pending: 1, unreachable: 4)
        #expect(try JSONDecoder().decode(RotationProgress.self, from: try encoder.encode(progress)) == progress)
    }
}
