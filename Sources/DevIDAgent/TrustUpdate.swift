import DevIDPKI
public import Foundation
public import X509

/// Root rollover on the device: which roots `trust.pem` should hold after a check-in.
///
/// The server lists the fingerprints of the roots devices should trust (``DeviceStatus/trustedRoots``). A listed
/// root the agent does not hold is added only if `/cacerts` (fetched over TLS checked against the current bundle)
/// offers it together with a cross-certificate for it — the same subject and key — signed by a root the agent
/// already trusts and valid now: the new root is learnt through the old one, never on the server's word alone. A
/// held root the server no longer lists is dropped, but only while at least one listed root stays, so the bundle
/// never empties.
public enum TrustUpdate {
    public struct Change: Sendable, Hashable {
        public var bundle: [Certificate]
        public var added: [Certificate]
        public var dropped: [Certificate]
    }

    /// Whether `listed` names a root `current` lacks (then `/cacerts` is worth fetching).
    public static func wantsNewRoot(current: [Certificate], listed: [String]) -> Bool {
        let held = Set(current.map(\.sha256Fingerprint))
        return listed.contains { !held.contains($0) }
    }

    /// The new bundle, or nil when nothing changes.
    public static func reconcile(
        current: [Certificate], listed: [String], offered: [Certificate], at now: Date
    ) -> Change? {
        var bundle = current
        var added: [Certificate] = []
        let held = Set(current.map(\.sha256Fingerprint))
        for fingerprint in listed where !held.contains(fingerprint) {
            guard
                let root = offered.first(where: {
                    $0.sha256Fingerprint == fingerprint && $0.issuer == $0.subject
                        && $0.publicKey.isValidSignature($0.signature, for: $0)
                })
            else { continue }
            let vouched = offered.contains { cross in
                cross != root && cross.subject == root.subject && cross.publicKey == root.publicKey
                    && cross.notValidBefore <= now && now <= cross.notValidAfter
                    && current.contains { anchor in
                        cross.issuer == anchor.subject && anchor.publicKey.isValidSignature(cross.signature, for: cross)
                    }
            }
            if vouched {
                bundle.append(root)
                added.append(root)
            }
        }
        let wanted = Set(listed)
        let kept = bundle.filter { wanted.contains($0.sha256Fingerprint) }
        var dropped: [Certificate] = []
        if !kept.isEmpty, kept.count < bundle.count {
            dropped = bundle.filter { !wanted.contains($0.sha256Fingerprint) }
            bundle = kept
        }
        guard !added.isEmpty || !dropped.isEmpty else { return nil }
        return Change(bundle: bundle, added: added, dropped: dropped)
    }
}
