public import Foundation
@_spi(FixedExpiryValidationTime) public import X509

/// Validates certificate chains at an injected time.
///
/// This is the one place DevID uses swift-certificates' `FixedExpiryValidationTime` SPI (STYLE.md): the public
/// `RFC5280Policy()` reads the real clock, which lifecycle code must not do.
public struct TrustVerifier: Sendable {
    public enum Outcome: Sendable, Hashable {
        /// Leaf first, trust anchor last.
        case trusted(chain: [Certificate])
        /// One line, safe to log and to show a client.
        case untrusted(reason: String)
    }

    public let anchors: [Certificate]
    public let intermediates: [Certificate]

    /// - Parameters:
    ///   - anchors: certificates trusted as they are (self-signed or not).
    ///   - intermediates: CA certificates that may complete a chain a client sent without them.
    public init(anchors: [Certificate], intermediates: [Certificate] = []) {
        self.anchors = anchors
        self.intermediates = intermediates
    }

    /// Validates `leaf` (with `presented` certificates the peer sent after it) at `time`.
    public func validate(leaf: Certificate, presented: [Certificate] = [], at time: Date) async -> Outcome {
        var verifier = Verifier(rootCertificates: CertificateStore(anchors)) {
            RFC5280Policy(fixedExpiryValidationTime: time)
        }
        let result = await verifier.validate(
            leaf: leaf, intermediates: CertificateStore(intermediates + presented))
        switch result {
        case .validCertificate(let chain):
            return .trusted(chain: Array(chain))
        case .couldNotValidate(let failures):
            if time < leaf.notValidBefore { return .untrusted(reason: "certificate is not yet valid") }
            if time > leaf.notValidAfter { return .untrusted(reason: "certificate has expired") }
            if failures.isEmpty { return .untrusted(reason: "certificate does not chain to a trusted CA") }
            return .untrusted(reason: "certificate does not chain to a trusted CA at this time")
        }
    }
}
