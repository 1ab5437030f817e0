import DevIDCore
import Foundation
import Testing

/// The credential rules, without I/O: where a credential stands, what it may do, and which way back a device has.
@Suite("CredentialLifecycle")
struct CredentialLifecycleTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let lifecycle = CredentialLifecycle(policy: RotationPolicy())
    let day: TimeInterval = 86_400

    func credential(
        _ status: CredentialStatus, from: TimeInterval = -10, to: TimeInterval = 20, overlapEnds: TimeInterval? = nil,
        confirmed: Bool = false, serial: String = "01"
    ) -> CredentialSnapshot {
        CredentialSnapshot(
            serial: SerialNumber(rawValue: serial)!, status: status, notBefore: now.addingTimeInterval(from * day),
            notAfter: now.addingTimeInterval(to * day), overlapDeadline: overlapEnds.map { now.addingTimeInterval($0 * day) },
            confirmed: confirmed)
    }

    @Test("standing", arguments: [
        (CredentialStatus.active, -10.0, 20.0, nil as Double?, "current"),
        (.active, 1, 30, nil, "notYetValid"),
        (.active, -40, -5, nil, "withinGrace"),
        (.active, -80, -31, nil, "expired"),
        (.superseded, -10, 20, 3, "overlap"),
        (.superseded, -10, 20, -1, "superseded"),
        (.superseded, -10, 20, nil, "superseded"),
        (.superseded, -40, -5, 3, "expired"),
        (.revoked, -10, 20, nil, "revoked"),
        (.expired, -10, 20, nil, "expired"),
    ])
    func standing(status: CredentialStatus, from: Double, to: Double, overlap: Double?, expected: String) {
        let standing = lifecycle.standing(credential(status, from: from, to: to, overlapEnds: overlap), at: now)
        let name =
            switch standing {
            case .current: "current"
            case .overlap: "overlap"
            case .withinGrace: "withinGrace"
            case .notYetValid: "notYetValid"
            case .revoked: "revoked"
            case .expired: "expired"
            case .superseded: "superseded"
            }
        #expect(name == expected)
    }

    @Test("authenticate, check in: within grace only re-enrolls")
    func authenticateAndCheckIn() {
        #expect(lifecycle.authenticate(credential(.active), at: now) == nil)
        #expect(lifecycle.checkIn(credential(.active), at: now) == nil)
        let late = credential(.active, from: -40, to: -5)
        #expect(lifecycle.authenticate(late, at: now) == nil)
        #expect(lifecycle.checkIn(late, at: now)?.code == .credentialExpired)
        #expect(lifecycle.authenticate(credential(.revoked), at: now)?.code == .credentialRevoked)
        #expect(lifecycle.authenticate(credential(.superseded, overlapEnds: -1), at: now)?.code == .credentialSuperseded)
        #expect(lifecycle.authenticate(credential(.active, from: -80, to: -31), at: now)?.code == .credentialExpired)
    }

    @Test("re-enrollment: current renews, late renews late, overlap retries only while the successor is unseen")
    func reenrollment() throws {
        let current = credential(.active)
        #expect(try lifecycle.reenrollment(current, successor: nil, at: now).get() == .init(supersede: [current.serial], late: false))
        let late = credential(.active, from: -40, to: -5)
        #expect(try lifecycle.reenrollment(late, successor: nil, at: now).get().late)
        let old = credential(.superseded, overlapEnds: 3, serial: "0a")
        let unseen = credential(.active, serial: "0b")
        #expect(
            try lifecycle.reenrollment(old, successor: unseen, at: now).get()
                == .init(supersede: [unseen.serial, old.serial], late: false))
        let seen = credential(.active, confirmed: true, serial: "0b")
        #expect(throws: LifecycleRefusal(.successorInUse, "credential superseded and its successor is in use")) {
            try lifecycle.reenrollment(old, successor: seen, at: now).get()
        }
        #expect(throws: LifecycleRefusal(.credentialRevoked, "credential is revoked")) {
            try lifecycle.reenrollment(credential(.revoked), successor: nil, at: now).get()
        }
        let supersededLate = credential(.superseded, from: -40, to: -5, overlapEnds: 3)
        #expect(throws: LifecycleRefusal(.credentialExpired, "credential has expired")) {
            try lifecycle.reenrollment(supersededLate, successor: nil, at: now).get()
        }
    }

    @Test("claim tokens: one that names no device creates new devices only")
    func claimTokens() {
        let acme = TenantID(rawValue: "acme")!
        let victim = DeviceID(rawValue: "victim-1")!
        let existing = DeviceSnapshot(id: victim, tenant: acme, lot: nil, state: .active)
        let bulk = CredentialLifecycle.TokenGrant(tenant: acme)
        #expect(
            CredentialLifecycle.claimTokenEnrollment(bulk, requested: victim, existing: existing)?.code
                == .tokenNotForExistingDevice)
        let manufactured = DeviceSnapshot(id: victim, tenant: acme, lot: nil, state: .manufactured)
        #expect(
            CredentialLifecycle.claimTokenEnrollment(bulk, requested: victim, existing: manufactured)?.code
                == .tokenNotForExistingDevice, "not even a device of the allowlist that never enrolled")
        #expect(CredentialLifecycle.claimTokenEnrollment(bulk, requested: victim, existing: nil) == nil)
        let bound = CredentialLifecycle.TokenGrant(tenant: acme, device: victim)
        #expect(CredentialLifecycle.claimTokenEnrollment(bound, requested: victim, existing: existing) == nil)
        #expect(
            CredentialLifecycle.claimTokenEnrollment(bound, requested: DeviceID(rawValue: "other")!, existing: nil)?.code
                == .tokenOtherDevice)
        let otherTenant = DeviceSnapshot(id: victim, tenant: TenantID(rawValue: "globex")!, lot: nil, state: .active)
        #expect(CredentialLifecycle.claimTokenEnrollment(bound, requested: victim, existing: otherTenant)?.code == .wrongTenant)
        let pattern = CredentialLifecycle.TokenGrant(tenant: acme, namePattern: "sensor-*")
        #expect(CredentialLifecycle.claimTokenEnrollment(pattern, requested: DeviceID(rawValue: "sensor-7")!, existing: nil) == nil)
        #expect(
            CredentialLifecycle.claimTokenEnrollment(pattern, requested: DeviceID(rawValue: "pump-7")!, existing: nil)?.code
                == .tokenOutOfScope)
    }

    @Test("name patterns", arguments: [
        ("sensor-*", "sensor-1", true), ("sensor-*", "sensor-", true), ("sensor-*", "pump-1", false),
        ("s?-1", "s1-1", true), ("s?-1", "s12-1", false), ("*", "anything", true), ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false), ("exact", "exact", true), ("exact", "exactly", false),
    ])
    func namePatterns(pattern: String, value: String, matches: Bool) {
        #expect(NamePattern.matches(pattern, value) == matches)
    }

    @Test func invalidPatterns() {
        #expect(NamePattern.isValid("sensor-*"))
        #expect(!NamePattern.isValid(""))
        #expect(!NamePattern.isValid("a/b"))
        #expect(!NamePattern.isValid("a\nb"))
        #expect(!NamePattern.isValid(String(repeating: "a", count: 65)))
    }

    @Test("refusal codes are stable snake_case strings")
    func codes() {
        for code in RefusalCode.allCases {
            #expect(code.rawValue.allSatisfy { $0.isLowercase || $0 == "_" }, "\(code.rawValue)")
        }
        #expect(RefusalCode.credentialRevoked.rawValue == "credential_revoked")
        #expect(RefusalCode.tokenNotForExistingDevice.rawValue == "token_not_for_existing_device")
    }
}
