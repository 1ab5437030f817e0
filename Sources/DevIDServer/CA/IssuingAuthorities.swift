public import DevIDCore
public import DevIDPKI
import DevIDStore
import Foundation
import Logging
import Synchronization
public import X509

/// The issuing CAs this server signs and trusts with, as the registry says: which one signs new LDevIDs, which
/// are still trusted for mTLS, which are revoked. One immutable ``Snapshot`` swapped whole after every change, so a
/// handshake, an enrollment and `/cacerts` each see one consistent set.
public final class IssuingAuthorities: Sendable {
    /// One CA: its certificate and key, and the registry's record.
    public struct Entry: Sendable {
        public let authority: IssuingAuthority
        public let record: IssuingCA
    }

    public struct Snapshot: Sendable {
        /// Every CA loaded from the data directory, recorded or not.
        public let loaded: [IssuingAuthority]
        /// Every CA the registry knows, by id.
        public let entries: [Entry]
        /// The one that signs.
        public let active: IssuingAuthority
        /// Every CA that is not revoked, by id: what devices may chain to, and what `/cacerts` lists.
        public let trusted: [IssuingAuthority]
        /// The roots, their cross-certificates and which are trusted (`DATA/ca/roots`).
        public let roots: Roots
        /// LDevIDs chain to a trusted issuing CA (each an anchor of its own, see ``CAHierarchy/deviceTrust``),
        /// IDevIDs to a trusted manufacturer CA.
        public let deviceTrust: TrustVerifier
        /// What `/cacerts` answers: the certs-only CMS of ``caCertificates()``, encoded once per snapshot instead of
        /// on every request (each device asks it before it enrolls).
        public fileprivate(set) var caCertsCMS: [UInt8] = []

        /// Whether `chain` (leaf first, as verified) runs through a trusted issuing CA.
        public func isLDevIDChain(_ chain: [Certificate]) -> Bool {
            trusted.contains { chain.contains($0.certificate) }
        }

        /// The trusted CA whose signature `certificate` carries.
        public func trustedIssuer(of certificate: Certificate) -> IssuingAuthority? {
            trusted.first {
                certificate.issuer == $0.certificate.subject
                    && $0.certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
            }
        }

        /// The CA certificates `/cacerts` returns: every trusted issuing CA, the active one first, then every
        /// trusted root (the active one first) and the cross-certificates between them, with which a device that
        /// trusts one root validates the other (and learns it).
        public func caCertificates() -> [Certificate] {
            [active.certificate] + trusted.filter { $0.id != active.id }.map(\.certificate) + roots.trusted
                + roots.trustedCross
        }
    }

    private let current: Mutex<Snapshot>
    private let manufacturers: [Certificate]

    /// Builds the snapshot from the CAs on disk and their records. Fails when the records name no active CA on
    /// disk.
    public init(
        authorities: [IssuingAuthority], records: [IssuingCA], roots: Roots, manufacturers: [Certificate]
    ) throws {
        self.manufacturers = manufacturers
        self.current = Mutex(try Self.snapshot(authorities, records, roots, manufacturers))
    }

    public var snapshot: Snapshot { current.withLock { $0 } }

    /// Replaces the snapshot (after the registry changed, or a CA or root was prepared on disk).
    public func update(authorities: [IssuingAuthority], records: [IssuingCA], roots: Roots) throws {
        let next = try Self.snapshot(authorities, records, roots, manufacturers)
        current.withLock { $0 = next }
    }

    private static func snapshot(
        _ authorities: [IssuingAuthority], _ records: [IssuingCA], _ roots: Roots, _ manufacturers: [Certificate]
    ) throws -> Snapshot {
        var entries: [Entry] = []
        for authority in authorities.sorted(by: { $0.id < $1.id }) {
            // A CA on disk the registry does not know yet (being registered) is neither trusted nor used.
            guard let record = records.first(where: { $0.id == authority.id }) else { continue }
            guard record.sha256 == authority.certificate.sha256Fingerprint else {
                throw DevIDPKIError(
                    .untrusted, "issuing CA \(authority.id) on disk is not the certificate the registry recorded")
            }
            entries.append(Entry(authority: authority, record: record))
        }
        guard let active = entries.first(where: { $0.record.state == .active })?.authority else {
            throw DevIDPKIError(.notFound, "the registry names no active issuing CA that is in the data directory")
        }
        let trusted = entries.filter { $0.record.isTrusted }.map(\.authority)
        var snapshot = Snapshot(
            loaded: authorities, entries: entries, active: active, trusted: trusted, roots: roots,
            deviceTrust: TrustVerifier(anchors: trusted.map(\.certificate) + manufacturers, intermediates: []))
        snapshot.caCertsCMS = try CertsOnlyCMS(certificates: snapshot.caCertificates()).derBytes()
        return snapshot
    }

    /// Brings the registry in step with the data directory at start: a CA on disk the registry does not know is
    /// recorded, CA 1 as `active` when no CA is active (a registry from before several CAs existed), any other as
    /// `prepared`. Returns the records after.
    static func register(
        _ authorities: [IssuingAuthority], store: any Store, auditor: Auditor, now: Date, actor: String
    ) async throws -> [IssuingCA] {
        var records = try await store.issuingCAs()
        for authority in authorities where !records.contains(where: { $0.id == authority.id }) {
            let state: IssuingCAState = authority.id == 1 && !records.contains { $0.state == .active } ? .active : .prepared
            try await store.insertIssuingCA(
                authority.record(state: state, at: now),
                audit: auditor.event(
                    actor: actor, action: "ca.issuing.add", outcome: .success,
                    reason: "recorded issuing CA \(authority.id) (\(authority.certificate.sha256Fingerprint.prefix(16))) as \(state.rawValue)"))
            records = try await store.issuingCAs()
        }
        return records
    }
}
