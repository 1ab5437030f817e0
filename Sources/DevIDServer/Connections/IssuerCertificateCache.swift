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

    static let shared = IssuerCertificateCache()
}
