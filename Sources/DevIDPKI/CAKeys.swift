public import DevIDPKCS11
import Crypto
public import DevIDCore
import Foundation
public import X509

/// Where a CA key lives: an encrypted PKCS#8 file (`DATA/ca/issuing.key`), or a PKCS#11 token, recorded as the key's
/// `pkcs11:` URI in a reference file beside where the file would be (`DATA/ca/issuing.key.uri`; it holds no secret:
/// the PIN comes from the URI's pin-source). Every CA key DevID reads goes through ``read(_:passphrase:)``, so the
/// server signs LDevIDs, CRLs and OCSP responses through the token without knowing it.
///
/// Keys DevID creates in a token are labelled by role: `root`, `issuing`, `services`, `manufacturer`, and for later
/// CAs `root<id>`, `issuing<id>`, `manufacturer<id>`.
public enum CAKeys {
    /// The reference file for the key at `keyPath`.
    public static func referencePath(_ keyPath: String) -> String { keyPath + ".uri" }

    /// The URI of the key at `keyPath` when it lives in a token.
    public static func uri(_ keyPath: String) throws(DevIDPKIError) -> PKCS11URI? {
        let reference = referencePath(keyPath)
        guard FileManager.default.fileExists(atPath: reference) else { return nil }
        let text = String(decoding: try SecureFile.read(reference), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            return try PKCS11URI(text)
        } catch {
            throw DevIDPKIError(.malformed, "\(reference): \(error.reason)")
        }
    }

    /// Whether there is a key for `keyPath`: the file, or a reference to a token key.
    public static func exists(_ keyPath: String) -> Bool {
        FileManager.default.fileExists(atPath: keyPath) || FileManager.default.fileExists(atPath: referencePath(keyPath))
    }

    /// Where the key at `keyPath` lives, for `devid ca show`: its URI, or the file.
    public static func location(_ keyPath: String) -> String? {
        if let uri = try? uri(keyPath) { return uri.description }
        return FileManager.default.fileExists(atPath: keyPath) ? keyPath : nil
    }

    /// The key at `keyPath`: opened in its token when there is a reference file, else decrypted from the file.
    public static func read(_ keyPath: String, passphrase: [UInt8]) throws(DevIDPKIError) -> Certificate.PrivateKey {
        if let uri = try uri(keyPath) {
            return try open(uri)
        }
        let pem = String(decoding: try SecureFile.read(keyPath), as: UTF8.self)
        return try KeyMaterial.privateKey(pkcs8: EncryptedPrivateKey.decrypt(pem: pem, passphrase: passphrase))
    }

    /// The key `uri` names, in its token.
    public static func open(_ uri: PKCS11URI) throws(DevIDPKIError) -> Certificate.PrivateKey {
        do {
            return Certificate.PrivateKey(try PKCS11PrivateKey.open(uri))
        } catch {
            throw DevIDPKIError(error)
        }
    }

    /// A key for a ceremony named by a file path (encrypted with `passphrase`) or a `pkcs11:` URI (`--root-key`).
    public static func openCeremonyKey(_ pathOrURI: String, passphrase: [UInt8]) throws(DevIDPKIError) -> Certificate.PrivateKey {
        if PKCS11URI.isURI(pathOrURI) {
            let uri: PKCS11URI
            do { uri = try PKCS11URI(pathOrURI) } catch { throw DevIDPKIError(error) }
            return try open(uri)
        }
        // A path whose key was made in a token (`devid ca init --key-uri`) has its reference file instead.
        guard FileManager.default.fileExists(atPath: pathOrURI) || FileManager.default.fileExists(atPath: referencePath(pathOrURI))
        else {
            throw DevIDPKIError(.notFound, "root key \(pathOrURI) not found")
        }
        return try read(pathOrURI, passphrase: passphrase)
    }

    /// Creates a CA key for `keyPath`: in the token `token` (labelled `label`, its URI written to the reference file),
    /// or, without a token, a fresh key encrypted into the file. Returns the key.
    public static func create(
        _ keyPath: String, algorithm: KeyAlgorithm, token: PKCS11URI?, label: String, passphrase: [UInt8], rounds: Int
    ) throws(DevIDPKIError) -> Certificate.PrivateKey {
        guard let token else {
            let (key, pkcs8) = try KeyMaterial.generateWithDER(algorithm)
            let pem = try EncryptedPrivateKey.encryptPEM(privateKeyInfoDER: pkcs8, passphrase: passphrase, iterations: rounds)
            try SecureFile.write(Array(pem.utf8), to: keyPath, mode: 0o600)
            return key
        }
        let curve: PKCS11Curve
        switch algorithm {
        case .p256: curve = .p256
        case .p384: curve = .p384
        default: throw DevIDPKIError(.unsupportedAlgorithm, "keys in a PKCS#11 token are P-256 or P-384")
        }
        do {
            let key = try PKCS11PrivateKey.generate(in: token, label: label, curve: curve)
            try SecureFile.write(Array((key.uri.description + "\n").utf8), to: referencePath(keyPath), mode: 0o600)
            return Certificate.PrivateKey(key)
        } catch let error as PKCS11Error {
            throw DevIDPKIError(error)
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.io, "\(error)")
        }
    }

    /// The token new CA keys of a hierarchy go to: the one the first issuing CA's key lives in, if any.
    public static func token(layout: CALayout) -> PKCS11URI? {
        (try? uri(layout.issuingKey))?.tokenURI
    }

    /// `devid ca import-key`: moves the encrypted file key at `keyPath` into the token `token` (labelled `label`),
    /// checks the token's key is the same key (by public key and a signature), writes the reference file and removes
    /// the file from the data directory. Copies elsewhere (backups) must be destroyed by the operator.
    public static func importKey(
        _ keyPath: String, token: PKCS11URI, label: String, passphrase: [UInt8]
    ) throws(DevIDPKIError) -> PKCS11URI {
        guard try uri(keyPath) == nil else {
            throw DevIDPKIError(.alreadyExists, "\(keyPath) already lives in a token (\(referencePath(keyPath)))")
        }
        guard FileManager.default.fileExists(atPath: keyPath) else { throw DevIDPKIError(.notFound, "\(keyPath) not found") }
        let pem = String(decoding: try SecureFile.read(keyPath), as: UTF8.self)
        let pkcs8 = try EncryptedPrivateKey.decrypt(pem: pem, passphrase: passphrase)
        let curve: PKCS11Curve
        let scalar: [UInt8]
        let point: [UInt8]
        let publicKey: Certificate.PublicKey
        if let key = try? P256.Signing.PrivateKey(derRepresentation: pkcs8) {
            (curve, scalar, point) = (.p256, Array(key.rawRepresentation), Array(key.publicKey.x963Representation))
            publicKey = Certificate.PublicKey(key.publicKey)
        } else if let key = try? P384.Signing.PrivateKey(derRepresentation: pkcs8) {
            (curve, scalar, point) = (.p384, Array(key.rawRepresentation), Array(key.publicKey.x963Representation))
            publicKey = Certificate.PublicKey(key.publicKey)
        } else {
            throw DevIDPKIError(.unsupportedAlgorithm, "\(keyPath) is not a P-256 or P-384 key")
        }
        let imported: PKCS11PrivateKey
        do {
            imported = try PKCS11PrivateKey.importKey(
                in: token, label: label, curve: curve, value: scalar, publicKey: publicKey, x963: point)
            // The token's key must sign for the file's public key before the file goes.
            let probe = Array("devid import-key".utf8)
            let der = try imported.signDigest(imported.digest(probe))
            let valid: Bool
            switch curve {
            case .p256:
                valid = try P256.Signing.PublicKey(x963Representation: point).isValidSignature(
                    try P256.Signing.ECDSASignature(derRepresentation: der), for: SHA256.hash(data: probe))
            case .p384:
                valid = try P384.Signing.PublicKey(x963Representation: point).isValidSignature(
                    try P384.Signing.ECDSASignature(derRepresentation: der), for: SHA384.hash(data: probe))
            }
            guard valid, imported.publicKey == publicKey else {
                try? imported.destroy()
                throw DevIDPKIError(.invalidSignature, "the imported key in token \(token) does not sign for \(keyPath)")
            }
        } catch let error as PKCS11Error {
            throw DevIDPKIError(error)
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.invalidSignature, "the imported key could not be checked")
        }
        try SecureFile.write(Array((imported.uri.description + "\n").utf8), to: referencePath(keyPath), mode: 0o600)
        do {
            try FileManager.default.removeItem(atPath: keyPath)
        } catch {
            throw DevIDPKIError(.io, "\(keyPath) could not be removed; remove it by hand")
        }
        return imported.uri
    }
}

extension DevIDPKIError {
    /// A PKCS#11 failure as a PKI error: a token that is down or refuses the PIN is `.keyUnavailable` (the server
    /// answers 503 and recovers when the token returns); a missing key is `.notFound`.
    public init(_ error: PKCS11Error, file: String = #fileID, line: UInt = #line) {
        switch error.code {
        case .keyNotFound, .tokenNotFound: self.init(.notFound, error.reason, file: file, line: line)
        case .invalidURI: self.init(.malformed, error.reason, file: file, line: line)
        case .alreadyExists: self.init(.alreadyExists, error.reason, file: file, line: line)
        case .mechanismUnsupported: self.init(.unsupportedAlgorithm, error.reason, file: file, line: line)
        default: self.init(.keyUnavailable, error.reason, file: file, line: line)
        }
    }
}
