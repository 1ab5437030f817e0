import DevIDPKI
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// The issuers of verified client chains, parsed once: every device's chain ends in the same few CA certificates,
/// and parsing them again for each request was a visible share of an enrollment's CPU (BENCHMARKS.md, "Enrollment
/// CPU and TLS resumption"). Keyed by the exact DER; only certificates of chains DevID's verifier accepted reach
/// it, so it holds the trusted CAs and stops adding at `limit`.
final class IssuerCertificateCache: Sendable {
    private let parsed = Mutex<[[UInt8]: Certificate]>([:])
    let limit: Int

    init(limit: Int = 256) {
        self.limit = limit
    }

    /// The certificate for `der`, parsed now or before; nil if it does not parse.
    func certificate(der: [UInt8]) -> Certificate? {
        if let known = parsed.withLock({ $0[der] }) { return known }
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        parsed.withLock { if $0.count < limit { $0[der] = certificate } }
        return certificate
    }

    /// The certificate for `der` if it was parsed before (no parsing here: `der` may be anything a peer sent).
    func known(der: [UInt8]) -> Certificate? {
        parsed.withLock { $0[der] }
    }

    private let forNIOSSL = Mutex<[Certificate: NIOSSLCertificate]>([:])

    /// `certificate` (an issuer in a chain the verifier accepted) as NIOSSL's validated chain holds it: encoded and
    /// read by BoringSSL once, then reused for every handshake that chains to it. The leaf never comes here.
    func nioSSLCertificate(for certificate: Certificate) throws -> NIOSSLCertificate {
        if let known = forNIOSSL.withLock({ $0[certificate] }) { return known }
        let der = certificate.derBytes
        let converted = try NIOSSLCertificate(bytes: der, format: .der)
        forNIOSSL.withLock { if $0.count < limit { $0[certificate] = converted } }
        parsed.withLock { if $0.count < limit, $0[der] == nil { $0[der] = certificate } }
        return converted
    }

    static let shared = IssuerCertificateCache()
}

/// Leaves the client-certificate verifier has just parsed and accepted, by their DER, for the request on the same
/// connection: its handler takes the parsed leaf instead of parsing the same bytes again. Bounded: when `limit`
/// entries wait (connections that closed before a request), it starts again from empty; a leaf not found here is
/// parsed as before.
final class VerifiedLeafHandoff: Sendable {
    private let waiting = Mutex<[[UInt8]: Certificate]>([:])
    let limit: Int

    init(limit: Int = 1_024) {
        self.limit = limit
    }

    func put(der: [UInt8], _ leaf: Certificate) {
        waiting.withLock { waiting in
            if waiting.count >= limit { waiting.removeAll(keepingCapacity: true) }
            waiting[der] = leaf
        }
    }

    func take(der: [UInt8]) -> Certificate? {
        waiting.withLock { $0.removeValue(forKey: der) }
    }

    static let shared = VerifiedLeafHandoff()
}
