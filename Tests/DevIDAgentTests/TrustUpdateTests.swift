import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing
import X509

/// The agent's side of a root rollover, without I/O: which roots `trust.pem` holds after a check-in.
@Suite("Trust bundle updates (root rollover)")
struct TrustUpdateTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    struct Rollover {
        let old: CertificateAuthority
        let new: CertificateAuthority
        let newByOld: Certificate
        let oldByNew: Certificate
    }

    static func rollover(name: String = "Root") throws -> Rollover {
        let oldKey = try KeyMaterial.generate(.p384)
        let newKey = try KeyMaterial.generate(.p384)
        let oldName = try DistinguishedName { CommonName("\(name) 1") }
        let newName = try DistinguishedName { CommonName("\(name) 2") }
        let old = try CertificateAuthority.makeRoot(subject: oldName, key: oldKey, profile: .root, now: now)
        let new = try CertificateAuthority.makeRoot(subject: newName, key: newKey, profile: .root, now: now)
        return Rollover(
            old: old, new: new,
            newByOld: try old.issue(subject: newName, publicKey: newKey.publicKey, profile: .root, now: now),
            oldByNew: try new.issue(subject: oldName, publicKey: oldKey.publicKey, profile: .root, now: now))
    }

    @Test("a listed root is added only with a cross-certificate from a root already trusted")
    func adds() throws {
        let roll = try Self.rollover()
        let listed = [roll.old.certificate.sha256Fingerprint, roll.new.certificate.sha256Fingerprint]
        #expect(TrustUpdate.wantsNewRoot(current: [roll.old.certificate], listed: listed))
        let change = try #require(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: listed, offered: [roll.new.certificate, roll.newByOld],
                at: Self.now))
        #expect(change.bundle == [roll.old.certificate, roll.new.certificate])
        #expect(change.added == [roll.new.certificate] && change.dropped.isEmpty)

        // Without the cross-certificate, or with one from a root the agent does not trust, or expired: nothing.
        #expect(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: listed, offered: [roll.new.certificate], at: Self.now) == nil)
        let stranger = try Self.rollover(name: "Stranger")
        let forged = try stranger.old.issue(
            subject: roll.new.certificate.subject, publicKey: roll.new.certificate.publicKey, profile: .root, now: Self.now)
        #expect(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: listed, offered: [roll.new.certificate, forged], at: Self.now)
                == nil)
        #expect(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: listed, offered: [roll.new.certificate, roll.newByOld],
                at: Self.now.addingTimeInterval(30 * 365 * 86_400)) == nil,
            "an expired cross-certificate vouches for nothing")
        // A cross-certificate for another key under the same name does not vouch for this root.
        let otherKey = try KeyMaterial.generate(.p384)
        let wrongKey = try roll.old.issue(
            subject: roll.new.certificate.subject, publicKey: otherKey.publicKey, profile: .root, now: Self.now)
        #expect(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: listed, offered: [roll.new.certificate, wrongKey], at: Self.now)
                == nil)
    }

    @Test("a root no longer listed is dropped, but never the last listed one")
    func drops() throws {
        let roll = try Self.rollover()
        let both = [roll.old.certificate, roll.new.certificate]
        let change = try #require(
            TrustUpdate.reconcile(
                current: both, listed: [roll.new.certificate.sha256Fingerprint], offered: [], at: Self.now))
        #expect(change.bundle == [roll.new.certificate] && change.dropped == [roll.old.certificate])
        // The server lists only a root the agent cannot add: it keeps what it has.
        #expect(
            TrustUpdate.reconcile(
                current: [roll.old.certificate], listed: [roll.new.certificate.sha256Fingerprint], offered: [],
                at: Self.now) == nil)
        #expect(
            TrustUpdate.reconcile(
                current: both, listed: both.map(\.sha256Fingerprint), offered: [], at: Self.now) == nil)
    }
}
