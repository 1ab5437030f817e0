import DevIDCore
import DevIDStore
import Foundation
import Testing

/// The issuing CAs' records (``Store/issuingCAs()``), their state changes, the per-issuer LDevID counts, and the
/// `issuer` credential scope that taint and revoke use.
@Suite("Issuing CAs")
struct IssuingCATests {
    static let first = "CN=DevID Issuing CA,O=acme"
    static let second = "CN=DevID Issuing CA 2,O=acme"

    static func ca(_ id: Int, _ state: IssuingCAState, subject: String? = nil) -> IssuingCA {
        IssuingCA(
            id: id, subject: subject ?? (id == 1 ? first : "CN=DevID Issuing CA \(id),O=acme"),
            sha256: String(repeating: String(id), count: 64), serial: "5e\(id)", notBefore: Fixture.time(0),
            notAfter: Fixture.time(86_400 * 365), state: state, createdAt: Fixture.time(1), stateChangedAt: Fixture.time(1))
    }

    /// A credential of `device` signed by `issuer`.
    static func credential(
        _ index: Int, device: String, issuer: String, status: CredentialStatus = .active
    ) -> Credential {
        var credential = Fixture.credential(index, device: device)
        credential.issuer = issuer
        credential.status = status
        return credential
    }

    @Test("recorded CAs come back by id; a taken id, subject or fingerprint is refused and nothing changes", arguments: StoreKind.allCases)
    func records(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.insertIssuingCA(Self.ca(2, .prepared), audit: Fixture.event("ca.issuing.add"))
            try await store.insertIssuingCA(Self.ca(1, .active), audit: nil)
            #expect(try await store.issuingCAs() == [Self.ca(1, .active), Self.ca(2, .prepared)])
            let audit = try await Fixture.auditCount(store)
            for duplicate in [
                Self.ca(1, .prepared, subject: "CN=other"), Self.ca(3, .prepared, subject: Self.first),
                { var ca = Self.ca(3, .prepared); ca.sha256 = Self.ca(2, .prepared).sha256; return ca }(),
            ] {
                await #expect(throws: StoreError(.duplicate, "")) {
                    try await store.insertIssuingCA(duplicate, audit: Fixture.event("ca.issuing.add"))
                }
            }
            #expect(try await store.issuingCAs().count == 2)
            #expect(try await Fixture.auditCount(store) == audit)
        }
    }

    @Test("state changes apply together with their audit event, only from the expected states", arguments: StoreKind.allCases)
    func changesStates(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.insertIssuingCA(Self.ca(1, .active), audit: nil)
            try await store.insertIssuingCA(Self.ca(2, .prepared), audit: nil)
            let audit = try await Fixture.auditCount(store)
            try await store.changeIssuingCAStates(
                [.init(id: 2, from: .prepared, to: .active), .init(id: 1, from: .active, to: .retiring)],
                at: Fixture.time(100), revocationReason: nil, audit: Fixture.event("ca.issuing.activate"))
            var cas = try await store.issuingCAs()
            #expect(cas.map(\.state) == [.retiring, .active])
            #expect(cas.map(\.stateChangedAt) == [Fixture.time(100), Fixture.time(100)])
            #expect(try await Fixture.auditCount(store) == audit + 1)

            // A stale expectation (another server moved CA 1 first) changes nothing, not even the first move.
            await #expect(throws: StoreError(.conflict, "")) {
                try await store.changeIssuingCAStates(
                    [.init(id: 2, from: .active, to: .retiring), .init(id: 1, from: .active, to: .active)],
                    at: Fixture.time(200), revocationReason: nil, audit: Fixture.event("ca.issuing.activate"))
            }
            await #expect(throws: StoreError(.notFound, "")) {
                try await store.changeIssuingCAStates(
                    [.init(id: 9, from: .prepared, to: .active)], at: Fixture.time(200), revocationReason: nil,
                    audit: Fixture.event("ca.issuing.activate"))
            }
            #expect(try await store.issuingCAs() == cas)
            #expect(try await Fixture.auditCount(store) == audit + 1)

            try await store.changeIssuingCAStates(
                [.init(id: 1, from: .retiring, to: .revoked)], at: Fixture.time(300), revocationReason: "keyCompromise",
                audit: Fixture.event("ca.issuing.revoke"))
            cas = try await store.issuingCAs()
            #expect(cas[0].state == .revoked && cas[0].revocationReason == "keyCompromise")
            #expect(cas[1].revocationReason == nil)
        }
    }

    @Test("LDevIDs are counted per issuer; online counts only active ones of devices seen recently", arguments: StoreKind.allCases)
    func countsByIssuer(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertDevice(Fixture.device("dev-2", lot: "lot-a"), audit: nil)
            try await store.insertDevice(Fixture.device("dev-3", lot: "lot-b"), audit: nil)
            try await store.recordSeen(Fixture.deviceID("dev-1"), at: Fixture.time(900))
            try await store.recordSeen(Fixture.deviceID("dev-2"), at: Fixture.time(100))
            for credential in [
                Self.credential(1, device: "dev-1", issuer: Self.first),
                Self.credential(2, device: "dev-2", issuer: Self.first),
                Self.credential(3, device: "dev-3", issuer: Self.first),
                Self.credential(4, device: "dev-1", issuer: Self.second, status: .superseded),
                Self.credential(5, device: "dev-1", issuer: Self.second, status: .revoked),
            ] {
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            }
            let counts = try await store.ldevidCountsByIssuer(now: Fixture.time(1000), seenSince: Fixture.time(500))
            #expect(counts[Self.first] == IssuerLDevIDCounts(current: 3, online: 1))
            #expect(counts[Self.second] == IssuerLDevIDCounts(current: 1, online: 0))
            // Expired ones are not current.
            let later = try await store.ldevidCountsByIssuer(now: Fixture.time(40 * 86_400), seenSince: Fixture.time(0))
            #expect(later.isEmpty)
        }
    }

    @Test("the issuer scope: taint marks and revocation touch that CA's LDevIDs only, no device state", arguments: StoreKind.allCases)
    func issuerScope(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertDevice(Fixture.device("dev-2", lot: "lot-a"), audit: nil)
            try await store.insertCredential(Self.credential(1, device: "dev-1", issuer: Self.first), audit: Fixture.event("est.enroll"))
            try await store.insertCredential(Self.credential(2, device: "dev-2", issuer: Self.first), audit: Fixture.event("est.enroll"))
            try await store.insertCredential(Self.credential(3, device: "dev-2", issuer: Self.second), audit: Fixture.event("est.enroll"))
            let scope = CredentialScope.issuer(Self.first)
            let now = Fixture.time(1000)

            #expect(try await store.rotationCandidates(scope, now: now) == 2)
            #expect(try await store.markRotationDue(scope, at: now, audit: Fixture.event("rotation.campaign")) == 2)
            let progress = try await store.rotationProgress(scope, now: now, unreachableAfter: 3600)
            #expect(progress.due == 2)
            #expect(try await store.credential(serial: Fixture.serial(3))?.rotationDue == false)

            let preview = try await store.blastRadius(scope, now: now)
            #expect(preview.credentials == 2 && preview.devices == 2)
            let devicesBefore = try await Fixture.allDevices(store)
            let radius = try await store.revoke(scope, reason: .caCompromise, at: now, audit: Fixture.event("revoke"))
            #expect(radius == preview)
            #expect(try await store.credential(serial: Fixture.serial(1))?.status == .revoked)
            #expect(try await store.credential(serial: Fixture.serial(1))?.revocationReason == .caCompromise)
            #expect(try await store.credential(serial: Fixture.serial(3))?.status == .active)
            #expect(try await Fixture.allDevices(store) == devicesBefore, "devices keep their state: they bootstrap again")
            let listed = try await store.revokedCredentials(
                issuer: Self.first, notExpiredAt: now, afterSerial: nil, limit: 10)
            #expect(listed.map(\.serial) == [Fixture.serial(1), Fixture.serial(2)])
        }
    }

    @Test("a scope round-trips through JSON as {\"issuer\": subject}")
    func scopeCoding() throws {
        let data = try JSONEncoder().encode(CredentialScope.issuer(Self.second))
        #expect(String(decoding: data, as: UTF8.self) == #"{"issuer":"CN=DevID Issuing CA 2,O=acme"}"#)
        #expect(try JSONDecoder().decode(CredentialScope.self, from: data) == .issuer(Self.second))
    }
}
