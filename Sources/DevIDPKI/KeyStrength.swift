import Crypto
import CryptoExtras
public import X509

/// Whether a certificate (an imported IDevID, an external manufacturer CA) is protected by a weak key or
/// signature: an RSA key under 2048 bits, or a SHA-1 signature. Used by the `weak_key` anomaly check.
///
/// swift-certificates already refuses to parse RSA keys under 2048 bits, so such an IDevID fails the TLS handshake
/// ("client certificate does not parse"); the key-size test here guards the day that changes.
public enum KeyStrength {
    /// A one-line weakness, or nil for a key and signature DevID considers strong enough.
    public static func weakness(of certificate: Certificate) -> String? {
        if let rsa = _RSA.Signing.PublicKey(certificate.publicKey), rsa.keySizeInBits < 2048 {
            return "RSA key of \(rsa.keySizeInBits) bits (at least 2048 needed)"
        }
        switch certificate.signatureAlgorithm {
        case .sha1WithRSAEncryption:
            return "signed with SHA-1"
        default:
            return nil
        }
    }
}
