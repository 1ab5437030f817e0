public import DevIDCore

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// What an OCSP responder says about one certificate (RFC 6960 §2.2).
public enum OCSPCertificateStatus: Sendable, Hashable {
    /// Not revoked (the responder knows the certificate and it is not on hold or revoked).
    case good
    /// Revoked at the given time for the given reason; `unspecified` is sent without a reason.
    case revoked(at: Date, reason: RevocationReason)
    /// The responder does not know the certificate (another issuer, never issued, or an unsupported CertID hash).
    case unknown
}
