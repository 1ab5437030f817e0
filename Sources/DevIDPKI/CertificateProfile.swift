import Crypto
import CryptoExtras
public import DevIDCore
public import X509

/// A certificate profile: which kind of certificate, and the policy data (lifetime, keys, backdate) it is cut with.
///
/// The extensions each kind carries are fixed by RFC 5280 and 802.1AR; the numbers are data in ``ProfilePolicy``.
public struct CertificateProfile: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Self-signed trust anchor: CA with the given path length, keyCertSign + cRLSign.
        case rootCA(pathLength: Int)
        /// Subordinate CA (issuing, manufacturer): CA with the given path length, keyCertSign + cRLSign.
        case intermediateCA(pathLength: Int)
        /// Factory identity: subject serialNumber = hardware serial; clientAuth.
        case idevid
        /// Operational identity: CN = device id, O = tenant, one SPIFFE URI SAN; clientAuth.
        case ldevid
        /// DevID's own listeners' certificate: serverAuth and id-kp-cmcRA (RFC 7030 §3.6.1: the EST server), DNS
        /// and IP SANs. Issued by the issuing CA only.
        case serverTLS
        /// A CA for the TLS certificates of services beside DevID (MQTT brokers): like ``intermediateCA(pathLength:)``,
        /// plus an extended key usage of serverAuth and clientAuth, which bounds what its certificates may be used
        /// for: never id-kp-cmcRA, so never the EST server.
        case servicesCA(pathLength: Int)
        /// A service's TLS server certificate (a broker's): serverAuth only, DNS and IP SANs. Issued by the services
        /// CA only.
        case serviceTLS
        /// A delegated OCSP responder (RFC 6960 §4.2.2.2): OCSPSigning, digitalSignature, id-pkix-ocsp-nocheck.
        case ocspSigning
    }

    public var kind: Kind
    public var policy: ProfilePolicy

    public init(kind: Kind, policy: ProfilePolicy) {
        self.kind = kind
        self.policy = policy
    }

    /// pathLen 2: an issuing CA under a later root, reached through a cross-certificate (root rollover), is two CAs
    /// below the old root, and OpenSSL enforces a trust anchor's own path length.
    public static let root = CertificateProfile(kind: .rootCA(pathLength: 2), policy: .rootCA)
    public static let issuing = CertificateProfile(kind: .intermediateCA(pathLength: 0), policy: .intermediateCA)
    /// The manufacturer CA is a trust anchor of its own (a separate chain from the operational one).
    public static let manufacturer = CertificateProfile(
        kind: .rootCA(pathLength: 0),
        policy: ProfilePolicy(
            name: "manufacturer-ca", lifetime: 20 * 365 * ProfilePolicy.day, backdate: 300,
            allowedKeyAlgorithms: [.p256]))
    public static let idevid = CertificateProfile(kind: .idevid, policy: .idevid)
    public static let ldevid = CertificateProfile(kind: .ldevid, policy: .ldevid)
    public static let serverTLS = CertificateProfile(kind: .serverTLS, policy: .serverTLS)
    /// The services CA: under the root, beside the issuing CA, for brokers' TLS certificates.
    public static let servicesCA = CertificateProfile(
        kind: .servicesCA(pathLength: 0),
        policy: ProfilePolicy(
            name: "services-ca", lifetime: 5 * 365 * ProfilePolicy.day, backdate: 300, allowedKeyAlgorithms: [.p256]))
    /// A broker's TLS certificate, from the services CA: the same lifetime and keys as DevID's own server certificate.
    public static let serviceTLS = CertificateProfile(
        kind: .serviceTLS,
        policy: ProfilePolicy(
            name: "service-tls", lifetime: ProfilePolicy.serverTLS.lifetime, backdate: ProfilePolicy.serverTLS.backdate,
            allowedKeyAlgorithms: ProfilePolicy.serverTLS.allowedKeyAlgorithms))
    /// The OCSP responder's signing certificate: short-lived (it cannot be revoked usefully, having nocheck), so
    /// rotated well before its 7 days are up.
    public static let ocspSigning = CertificateProfile(
        kind: .ocspSigning,
        policy: ProfilePolicy(
            name: "ocsp-signing", lifetime: 7 * ProfilePolicy.day, backdate: 300, allowedKeyAlgorithms: [.p256]))

    public var isCA: Bool {
        switch kind {
        case .rootCA, .intermediateCA, .servicesCA: true
        case .idevid, .ldevid, .serverTLS, .serviceTLS, .ocspSigning: false
        }
    }
}

extension KeyAlgorithm {
    /// The algorithm of a certificate or CSR public key, or nil if DevID does not know it.
    public init?(_ key: Certificate.PublicKey) {
        if P256.Signing.PublicKey(key) != nil {
            self = .p256
        } else if P384.Signing.PublicKey(key) != nil {
            self = .p384
        } else if Curve25519.Signing.PublicKey(key) != nil {
            self = .ed25519
        } else if let rsa = _RSA.Signing.PublicKey(key) {
            switch rsa.keySizeInBits {
            case 2048: self = .rsa2048
            case 3072: self = .rsa3072
            case 4096: self = .rsa4096
            default: return nil
            }
        } else {
            return nil
        }
    }
}
