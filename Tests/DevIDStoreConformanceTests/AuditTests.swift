import Crypto
import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Audit trail")
struct AuditTests {
    /// The chain hash, computed here independently of the stores.
    static func expectedHash(previous: String, _ event: AuditEvent) -> String {
        Hex.encode(SHA256.hash(data: Data((previous + "|" + event.canonicalContent).utf8)))
    }

    @Test(arguments: StoreKind.allCases)
    func appendChainsEntries(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let first = try await store.appendAudit(Fixture.event("ca.init", at: 1))
            let second = try await store.appendAudit(
                Fixture.event("admin.auth", outcome: .denied, at: 2, reason: "bad token"))
            let third = try await store.appendAudit(
                Fixture.event("est.enroll", device: "dev-1", serial: Fixture.serial(1), at: 3))

            #expect([first.sequence, second.sequence, third.sequence] == [1, 2, 3])
            #expect(first.previousHash == String(repeating: "0", count: 64))
            #expect(second.previousHash == first.hash)
            #expect(third.previousHash == second.hash)
            for event in [first, second, third] {
                #expect(event.hash == Self.expectedHash(previous: event.previousHash, event))
                #expect(event.hash.count == 64)
                #expect(event.hash == event.hash.lowercased())
            }
            #expect(first.hash != second.hash)

            // Read back exactly as returned, newest first.
            #expect(try await store.auditEvents(AuditFilter()) == [third, second, first])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func emptyTrailVerifies(kind: StoreKind) async throws {
        try await withStore(kind) { store throws in
            #expect(try await store.auditEvents(AuditFilter()) == [])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func timeIsKeptToTheMillisecond(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var event = Fixture.event("clock.check")
            event.time = Fixture.epoch.addingTimeInterval(0.123_456)
            let stored = try await store.appendAudit(event)
            #expect(stored.time == Date(timeIntervalSince1970: 1_790_000_000.123))
            #expect(try await store.auditEvents(AuditFilter()) == [stored])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func filtersAndLimit(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.appendAudit(Fixture.event("est.enroll", device: "dev-1", at: 1))
            try await store.appendAudit(Fixture.event("est.enroll", outcome: .denied, device: "dev-2", at: 2))
            try await store.appendAudit(Fixture.event("admin.auth", outcome: .denied, at: 3))
            try await store.appendAudit(Fixture.event("est.reenroll", device: "dev-1", at: 4))
            try await store.appendAudit(Fixture.event("est.enroll", device: "dev-1", at: 5))

            func sequences(_ filter: AuditFilter) async throws -> [Int64] {
                try await store.auditEvents(filter).map(\.sequence)
            }
            #expect(try await sequences(AuditFilter()) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(limit: 2)) == [5, 4])
            #expect(try await sequences(AuditFilter(action: "est.enroll")) == [5, 2, 1])
            #expect(try await sequences(AuditFilter(device: Fixture.deviceID("dev-1"))) == [5, 4, 1])
            #expect(try await sequences(AuditFilter(outcome: .denied)) == [3, 2])
            #expect(
                try await sequences(AuditFilter(action: "est.enroll", device: Fixture.deviceID("dev-1"), limit: 1)) == [
                    5
                ])
            #expect(try await sequences(AuditFilter(action: "est.enroll", outcome: .denied)) == [2])
            #expect(try await sequences(AuditFilter(action: "nothing")) == [])

            // Only what came after a known entry; still newest first, and the limit keeps the newest.
            #expect(try await sequences(AuditFilter(afterSequence: 2)) == [5, 4, 3])
            #expect(try await sequences(AuditFilter(afterSequence: 0)) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(afterSequence: -7)) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(afterSequence: 5)) == [])
            #expect(try await sequences(AuditFilter(afterSequence: 99)) == [])
            #expect(try await sequences(AuditFilter(limit: 2, afterSequence: 1)) == [5, 4])
            #expect(try await sequences(AuditFilter(action: "est.enroll", afterSequence: 1)) == [5, 2])
            #expect(
                try await sequences(AuditFilter(device: Fixture.deviceID("dev-1"), outcome: .success, afterSequence: 4))
                    == [5])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func changesAndStandaloneEventsShareOneChain(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.createTenant(Fixture.tenant(), audit: Fixture.event("tenant.create", at: 1))
            try await store.appendAudit(Fixture.event("admin.auth", at: 2))
            try await store.insertDevice(
                Fixture.device("dev-1"), audit: Fixture.event("device.import", device: "dev-1", at: 3))
            try await store.updateDeviceState(
                Fixture.deviceID("dev-1"), from: .manufactured, to: .active, audit: Fixture.event("est.enroll", at: 4))
            let credential = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(
                credential, audit: Fixture.event("est.enroll", serial: credential.serial, at: 5))
            try await store.insertClaimToken(Fixture.claimToken("tok"), audit: Fixture.event("token.create", at: 6))
            try await store.revokeClaimToken(id: "tok", audit: Fixture.event("token.revoke", at: 7))
            try await store.updateCredentialStatus(
                serial: credential.serial, status: .revoked, revokedAt: Fixture.time(8), reason: .superseded,
                audit: Fixture.event("credential.revoke", at: 8))
            try await store.insertAdminToken(
                AdminToken(id: "adm", secretHash: Fixture.sha256Hex([1]), createdAt: Fixture.time(9)),
                audit: Fixture.event("admin.token.create", at: 9))

            let events = try await store.auditEvents(AuditFilter()).reversed()
            #expect(
                events.map(\.action) == [
                    "tenant.create", "admin.auth", "device.import", "est.enroll", "est.enroll", "token.create",
                    "token.revoke", "credential.revoke", "admin.token.create",
                ])
            #expect(events.map(\.sequence) == Array(1...9))
            var previous = String(repeating: "0", count: 64)
            for event in events {
                #expect(event.previousHash == previous)
                #expect(event.hash == Self.expectedHash(previous: previous, event))
                previous = event.hash
            }
            #expect(try await store.verifyAuditChain() == nil)
        }
    }
}

/// Hostile values, keyed chains and tampering (issue #12, findings 2 and 3).
@Suite("Audit trail: hostile input and tamper evidence")
struct AuditTamperEvidenceTests {
    static let key = AuditKey(secret: Array(repeating: 7, count: 32))
    static let otherKey = AuditKey(secret: Array(repeating: 8, count: 32))

    /// Runs `body` against a fresh keyed store of `kind`.
    static func withKeyedStore(_ kind: StoreKind, _ body: (any Store) async throws -> Void) async throws {
        try await withStore(kind, auditKey: key, body)
    }

    /// Serials of every length a certificate can carry, including longer than RFC 5280's 20 octets.
    @Test(arguments: [1, 16, 17, 20, 21, 24, 64, 1000])
    func anySerialReadsBack(octets: Int) {
        let bytes = (0..<octets).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 0x81) }
        let serial = SerialNumber(bytes: bytes)
        #expect(SerialNumber(rawValue: serial.rawValue) == serial, "what is written can be read back")
        #expect(serial.isTruncated == (octets > SerialNumber.maximumOctets))
        if octets <= SerialNumber.maximumOctets { #expect(serial.rawValue == Hex.encode(bytes)) }
    }

    /// Values an attacker controls (a 24-octet serial, control characters, a huge reason) are bounded at write and
    /// read back exactly as `appendAudit` returned them; the chain verifies.
    @Test(arguments: StoreKind.allCases)
    func hostileValuesAreBoundedAndReadBack(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let serial = SerialNumber(bytes: (0..<24).map { UInt8($0 + 1) })
            var event = Fixture.event(
                "tls.client_auth", outcome: .denied, serial: serial,
                reason: "bad\u{0}\u{7}\r\ncert \u{202E}gpj.exe\u{2028}" + String(repeating: "A", count: 100_000))
            event.actor = String(repeating: "x", count: 5000) + "\u{1B}[31m"
            let stored = try await store.appendAudit(event)

            #expect(stored.reason.hasPrefix("bad\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}cert \u{FFFD}gpj.exe\u{FFFD}"))
            #expect(stored.reason.unicodeScalars.count <= AuditChain.maximumReasonLength + 20)
            #expect(stored.reason.hasSuffix(AuditChain.truncationMarker))
            #expect(stored.actor.unicodeScalars.count <= AuditChain.maximumActorLength + 20)
            #expect(!stored.actor.contains("\u{1B}"))
            #expect(stored.serial == serial)
            #expect(try await store.auditEvents(AuditFilter()) == [stored])
            #expect(try await store.auditEntries(AuditFilter()) == [AuditEntry(stored)])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func keyedChainUsesTheKey(kind: StoreKind) async throws {
        try await Self.withKeyedStore(kind) { store in
            let first = try await store.appendAudit(Fixture.event("ca.init", at: 1))
            let second = try await store.appendAudit(Fixture.event("admin.auth", at: 2, reason: "ok"))
            for event in [first, second] {
                let input = event.previousHash + "|" + event.canonicalContent
                #expect(event.hash == Self.key.mac(input))
                #expect(event.hash != Self.otherKey.mac(input))
                #expect(event.hash != AuditChain.hash(previous: event.previousHash, content: event.canonicalContent))
            }
            let report = try await store.auditChainReport(anchor: nil)
            #expect(report.isIntact)
            #expect(report.keyedFrom == 1)
            #expect(report.checked == 2)
            #expect(report.headSequence == 2)
            #expect(report.headHash == second.hash)
            #expect(report.summary == "audit chain intact: 2 entries, keyed from sequence 1")
            // A matching anchor verifies; one the trail does not reach means entries were deleted at the end.
            let anchored = try await store.auditChainReport(
                anchor: AuditAnchor(sequence: 2, hash: second.hash, keyedFrom: 1))
            #expect(anchored.isIntact)
            #expect(anchored.summary.hasSuffix("signed checkpoint at sequence 2 matches"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func exportPagesOldestFirst(kind: StoreKind) async throws {
        try await Self.withKeyedStore(kind) { store in
            for index in 1...5 { try await store.appendAudit(Fixture.event("e\(index)", at: TimeInterval(index))) }
            let page1 = try await store.auditEntries(AuditFilter(limit: 2, afterSequence: 0, oldestFirst: true))
            let page2 = try await store.auditEntries(AuditFilter(limit: 2, afterSequence: 2, oldestFirst: true))
            let page3 = try await store.auditEntries(AuditFilter(limit: 2, afterSequence: 4, oldestFirst: true))
            #expect((page1 + page2 + page3).map(\.sequence) == [1, 2, 3, 4, 5])
            #expect((page1 + page2 + page3).map(\.action) == ["e1", "e2", "e3", "e4", "e5"])
        }
    }
}
