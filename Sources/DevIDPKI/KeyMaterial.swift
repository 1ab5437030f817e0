import Crypto
public import DevIDCore
import SwiftASN1
import Foundation
public import X509

/// Private keys DevID generates and reads: P-256 for devices and intermediate CAs, P-384 for the root.
public enum KeyMaterial {
    /// A fresh key of `algorithm`.
    public static func generate(_ algorithm: KeyAlgorithm) throws(DevIDPKIError) -> Certificate.PrivateKey {
        switch algorithm {
        case .p256: return Certificate.PrivateKey(P256.Signing.PrivateKey())
        case .p384: return Certificate.PrivateKey(P384.Signing.PrivateKey())
        case .ed25519: return Certificate.PrivateKey(Curve25519.Signing.PrivateKey())
        default: throw DevIDPKIError(.unsupportedAlgorithm, "DevID generates only ECDSA P-256/P-384 and Ed25519 keys")
        }
    }

    /// A fresh key and its PKCS#8 PrivateKeyInfo DER (what gets encrypted and written to disk).
    public static func generateWithDER(_ algorithm: KeyAlgorithm) throws(DevIDPKIError) -> (
        key: Certificate.PrivateKey, pkcs8: [UInt8]
    ) {
        switch algorithm {
        case .p256:
            let key = P256.Signing.PrivateKey()
            return (Certificate.PrivateKey(key), Array(key.derRepresentation))
        case .p384:
            let key = P384.Signing.PrivateKey()
            return (Certificate.PrivateKey(key), Array(key.derRepresentation))
        default:
            throw DevIDPKIError(.unsupportedAlgorithm, "DevID stores only ECDSA P-256/P-384 keys on disk")
        }
    }

    /// Reads a PKCS#8 PrivateKeyInfo DER holding an ECDSA P-256 or P-384 key.
    public static func privateKey(pkcs8 der: [UInt8]) throws(DevIDPKIError) -> Certificate.PrivateKey {
        if let key = try? P256.Signing.PrivateKey(derRepresentation: der) {
            return Certificate.PrivateKey(key)
        }
        if let key = try? P384.Signing.PrivateKey(derRepresentation: der) {
            return Certificate.PrivateKey(key)
        }
        throw DevIDPKIError(.unsupportedAlgorithm, "private key is not an ECDSA P-256 or P-384 PKCS#8 key")
    }

    /// Reads a PEM private key: unencrypted PKCS#8 / SEC1, or PKCS#8 encrypted with PBES2 when a passphrase is given
    /// (asking for at most `maximumIterations` PBKDF2 iterations; see ``EncryptedPrivateKey``).
    public static func privateKey(
        pem: String,
        passphrase: [UInt8]?,
        maximumIterations: Int = EncryptedPrivateKey.maximumIterationCount
    ) throws(DevIDPKIError) -> Certificate.PrivateKey {
        if pem.contains("ENCRYPTED PRIVATE KEY") {
            guard let passphrase else {
                throw DevIDPKIError(.wrongPassphrase, "private key is encrypted and no passphrase was given")
            }
            let der = try EncryptedPrivateKey.decrypt(
                pem: pem, passphrase: passphrase, maximumIterations: maximumIterations)
            return try privateKey(pkcs8: der)
        }
        do {
            return try Certificate.PrivateKey(pemEncoded: pem)
        } catch {
            throw DevIDPKIError(.malformed, "private key PEM could not be read")
        }
    }

    /// SHA-256 of the key's SubjectPublicKeyInfo, lowercase hex: how the registry names a key.
    public static func fingerprint(_ publicKey: Certificate.PublicKey) -> String {
        Hex.encode(SHA256.hash(data: publicKey.subjectPublicKeyInfoBytes))
    }
}

extension Certificate.PublicKey {
    /// The DER of the SubjectPublicKeyInfo.
    public var subjectPublicKeyInfoBytes: [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(self)  // serializing an in-memory key cannot fail
        return serializer.serializedBytes
    }
}

extension Certificate {
    /// SHA-256 of the certificate DER, lowercase hex (what `openssl x509 -fingerprint -sha256` shows, without colons).
    public var sha256Fingerprint: String {
        Hex.encode(SHA256.hash(data: derBytes))
    }

    /// The certificate's DER.
    public var derBytes: [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(self)  // re-serializing a parsed or built certificate cannot fail
        return serializer.serializedBytes
    }

    /// The serial as DevID's lowercase-hex ``SerialNumber`` (a serial longer than RFC 5280 allows is cut to fit;
    /// see ``SerialNumber/init(bytes:)`` and ``devidSerialNote``).
    public var devidSerial: DevIDCore.SerialNumber {
        DevIDCore.SerialNumber(bytes: serialNumber.bytes)
    }

    /// For audit reasons: says that the serial was cut, and how long it was; nil for a serial that fits.
    public var devidSerialNote: String? {
        let octets = serialNumber.bytes.count
        guard octets > DevIDCore.SerialNumber.maximumOctets else { return nil }
        return "serial of \(octets) octets exceeds RFC 5280's \(DevIDCore.SerialNumber.maximumOctets), recorded truncated"
    }

    /// One PEM block.
    public var pemString: String {
        (try? serializeAsPEM().pemString) ?? ""
    }
}

/// Reading and writing certificates as PEM.
public enum PEM {
    /// Every CERTIFICATE block in `string`, in order. Fails if there is none or one does not parse.
    public static func certificates(_ string: String) throws(DevIDPKIError) -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: string)
        } catch {
            throw DevIDPKIError(.malformed, "not a PEM file")
        }
        var certificates: [Certificate] = []
        for document in documents where document.discriminator == "CERTIFICATE" {
            do {
                certificates.append(try Certificate(derEncoded: document.derBytes))
            } catch {
                throw DevIDPKIError(.malformed, "a CERTIFICATE block does not parse as X.509")
            }
        }
        guard !certificates.isEmpty else { throw DevIDPKIError(.malformed, "no CERTIFICATE block found") }
        return certificates
    }

    /// Concatenated PEM blocks.
    public static func bundle(_ certificates: [Certificate]) -> String {
        certificates.map(\.pemString).joined(separator: "\n") + "\n"
    }
}
