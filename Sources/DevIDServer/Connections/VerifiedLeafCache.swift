public import DevIDCore
public import Foundation
public import NIOSSL
import Synchronization

/// Client certificates the mTLS verifier accepted, by their exact DER, so a device that connects again (a resumed
/// session, or a new full handshake with the same certificate) is not put through chain building and the issuer's
/// signature check again.
///
/// Only the *chain* verdict is kept: who issued the certificate and that its signatures verify. What can change while a
/// certificate stays the same is checked on every use anyway:
/// - time: an entry is used only while the injected clock is inside the validity of every certificate in its chain
///   (the latest notBefore to the earliest notAfter); outside it, the verifier runs again, which also decides the
///   late-renewal grace of an expired LDevID (such a verdict is never stored);
/// - revocation, suspension, supersession: no certificate is trusted for those by the handshake; every handler reads
///   the live registry state of the credential and the device (``EnrollmentService/requireUsableCredential``,
///   ``CredentialLifecycle``), so a revoked device's resumed session is refused at once.
///
/// The TLS handshake itself (or, on resumption, the session's key) still proves possession of the certificate's key.
/// Bounded: when `capacity` entries are held, the cache is emptied before the next one is stored.
public final class VerifiedLeafCache: Sendable {
    struct Entry: Sendable {
        var chain: [NIOSSLCertificate]
        var validFrom: Date
        var validUntil: Date
    }

    private let entries = Mutex<[[UInt8]: Entry]>([:])
    let capacity: Int
    let clock: any WallClock

    public init(clock: any WallClock, capacity: Int = 10_000) {
        self.clock = clock
        self.capacity = max(1, capacity)
    }

    /// The chain verified earlier for this exact leaf, if the current time is inside the validity of all of it.
    func chain(for leaf: NIOSSLCertificate) -> [NIOSSLCertificate]? {
        guard let der = try? leaf.toDERBytes() else { return nil }
        let now = clock.now()
        return entries.withLock { entries in
            guard let entry = entries[der] else { return nil }
            guard entry.validFrom <= now, now <= entry.validUntil else {
                entries[der] = nil
                return nil
            }
            return entry.chain
        }
    }

    /// Forgets every verdict (an issuing CA stopped being trusted: chains through it must be verified again).
    func removeAll() {
        entries.withLock { $0.removeAll() }
    }

    /// Remembers a chain the verifier accepted (leaf first). Not stored when the current time is outside the validity
    /// of any certificate in it (the verifier accepted it under the late-renewal grace, which is decided anew).
    func store(_ chain: [NIOSSLCertificate]) {
        guard let leaf = chain.first, let der = try? leaf.toDERBytes() else { return }
        let validFrom = Date(timeIntervalSince1970: TimeInterval(chain.map(\.notValidBefore).max() ?? 0))
        let validUntil = Date(timeIntervalSince1970: TimeInterval(chain.map(\.notValidAfter).min() ?? 0))
        let now = clock.now()
        guard validFrom <= now, now <= validUntil else { return }
        entries.withLock { entries in
            if entries.count >= capacity, entries[der] == nil { entries.removeAll(keepingCapacity: true) }
            entries[der] = Entry(chain: chain, validFrom: validFrom, validUntil: validUntil)
        }
    }

    /// Entries held (for tests and metrics).
    var count: Int { entries.withLock { $0.count } }

    /// Wraps a verifier: a leaf verified before (and still inside its chain's validity) is accepted with its earlier
    /// chain; anything else goes to `verify`, and what it accepts is remembered.
    func caching(_ verify: @escaping MTLSVerify) -> MTLSVerify {
        { [self] certificates in
            if let leaf = certificates.first, let chain = chain(for: leaf) {
                return .certificateVerified(VerificationMetadata(ValidatedCertificateChain(chain)))
            }
            let result = await verify(certificates)
            if case .certificateVerified(let metadata) = result, let chain = metadata.validatedCertificateChain {
                store(Array(chain))
            }
            return result
        }
    }
}
