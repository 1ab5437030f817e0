import Crypto
import CryptoExtras
import Foundation
import SwiftASN1

/// Passphrase-protected private keys: PKCS#8 `EncryptedPrivateKeyInfo` (RFC 5958 §3) with PBES2 (RFC 8018 §6.2).
///
/// Writes PBKDF2 with HMAC-SHA256, a random 16-byte salt, and AES-256-CBC with a random 16-byte IV: what
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256` writes. Reads PBES2 with PBKDF2 over
/// HMAC-SHA1/256/384/512 and AES-128/192/256-CBC, so OpenSSL's defaults open too.
///
/// Errors: `.malformed` for bytes that are not such a structure (including iteration counts above 10,000,000),
/// `.unsupportedAlgorithm` for other PKCS#5 schemes (PBES1, scrypt, DES), and `.wrongPassphrase` when the
/// decrypted bytes are not a PKCS#8 `PrivateKeyInfo`. CBC has no integrity check, so a damaged ciphertext also
/// reads as `.wrongPassphrase`.
public enum EncryptedPrivateKey {
    /// The PEM label of an `EncryptedPrivateKeyInfo` (RFC 7468 §11).
    public static let pemDiscriminator = "ENCRYPTED PRIVATE KEY"

    /// The PBKDF2 iteration count used when the caller does not choose one.
    public static let defaultIterations = 100_000

    /// Encrypts a PKCS#8 `PrivateKeyInfo` DER into an `ENCRYPTED PRIVATE KEY` PEM block
    /// (with a trailing newline).
    ///
    /// - Throws: `.malformed` if `privateKeyInfoDER` is not a `PrivateKeyInfo`; `.policyViolation` for an empty
    ///   passphrase or an iteration count outside 1...10,000,000.
    public static func encryptPEM(
        privateKeyInfoDER: [UInt8],
        passphrase: [UInt8],
        iterations: Int = defaultIterations
    ) throws(DevIDPKIError) -> String {
        let der = try encryptDER(privateKeyInfoDER: privateKeyInfoDER, passphrase: passphrase, iterations: iterations)
        return PEMDocument(type: pemDiscriminator, derBytes: der).pemString + "\n"
    }

    /// Encrypts a PKCS#8 `PrivateKeyInfo` DER into an `EncryptedPrivateKeyInfo` DER.
    ///
    /// - Throws: as ``encryptPEM(privateKeyInfoDER:passphrase:iterations:)``.
    public static func encryptDER(
        privateKeyInfoDER: [UInt8],
        passphrase: [UInt8],
        iterations: Int = defaultIterations
    ) throws(DevIDPKIError) -> [UInt8] {
        guard !passphrase.isEmpty else {
            throw DevIDPKIError(.policyViolation, "refusing to encrypt a private key with an empty passphrase")
        }
        guard (1...PBKDF2Parameters.maximumIterationCount).contains(iterations) else {
            throw DevIDPKIError(.policyViolation, "PBKDF2 iteration count must be between 1 and 10000000")
        }
        guard isPrivateKeyInfo(privateKeyInfoDER) else {
            throw DevIDPKIError(.malformed, "input is not a PKCS#8 PrivateKeyInfo")
        }

        let parameters = PBES2Parameters(
            keyDerivation: PBKDF2Parameters(
                salt: randomBytes(count: 16),
                iterationCount: iterations,
                keyLength: nil,
                prf: .hmacWithSHA256
            ),
            cipher: .aes256CBC,
            iv: randomBytes(count: PBES2Parameters.ivByteCount)
        )
        do {
            let key = try deriveKey(passphrase: passphrase, parameters: parameters)
            let ciphertext = try AES._CBC.encrypt(
                privateKeyInfoDER,
                using: key,
                iv: AES._CBC.IV(ivBytes: parameters.iv)
            )
            let info = EncryptedPrivateKeyInfo(
                encryptionAlgorithm: PKCS5AlgorithmIdentifier(
                    algorithm: PBES2Parameters.oid,
                    parameters: try ASN1Any(erasing: parameters)
                ),
                encryptedData: ASN1OctetString(contentBytes: Array(ciphertext)[...])
            )
            var serializer = DER.Serializer()
            try serializer.serialize(info)
            return serializer.serializedBytes
        } catch {
            // Encrypting with parameters built above cannot fail short of a crypto backend fault.
            throw DevIDPKIError(.malformed, "private key could not be encrypted")
        }
    }

    /// Decrypts the single `ENCRYPTED PRIVATE KEY` block in `pem` and returns the PKCS#8 `PrivateKeyInfo` DER.
    ///
    /// `maximumIterations` bounds the PBKDF2 work a file can ask for (at most 10,000,000, the parser's own limit); a
    /// file asking for more is refused with `.malformed` before any key derivation.
    public static func decrypt(
        pem: String,
        passphrase: [UInt8],
        maximumIterations: Int = maximumIterationCount
    ) throws(DevIDPKIError) -> [UInt8] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw DevIDPKIError(.malformed, "not a PEM file")
        }
        let encrypted = documents.filter { $0.discriminator == pemDiscriminator }
        guard encrypted.count == 1, let document = encrypted.first else {
            throw DevIDPKIError(
                .malformed,
                encrypted.isEmpty ? "no ENCRYPTED PRIVATE KEY block found" : "more than one ENCRYPTED PRIVATE KEY block"
            )
        }
        return try decrypt(der: document.derBytes, passphrase: passphrase, maximumIterations: maximumIterations)
    }

    /// The largest PBKDF2 iteration count any file may ask for.
    public static let maximumIterationCount = PBKDF2Parameters.maximumIterationCount

    /// Decrypts an `EncryptedPrivateKeyInfo` DER and returns the PKCS#8 `PrivateKeyInfo` DER.
    ///
    /// `maximumIterations`: as in ``decrypt(pem:passphrase:maximumIterations:)``.
    public static func decrypt(
        der: [UInt8],
        passphrase: [UInt8],
        maximumIterations: Int = maximumIterationCount
    ) throws(DevIDPKIError) -> [UInt8] {
        let parameters: PBES2Parameters
        let ciphertext: ArraySlice<UInt8>
        do {
            let info = try EncryptedPrivateKeyInfo(derEncoded: der)
            guard info.encryptionAlgorithm.algorithm == PBES2Parameters.oid else {
                throw DevIDPKIError(.unsupportedAlgorithm, "private key is not encrypted with PBES2")
            }
            guard let any = info.encryptionAlgorithm.parameters else {
                throw DevIDPKIError(.malformed, "PBES2 parameters are missing")
            }
            parameters = try PBES2Parameters(asn1Any: any)
            ciphertext = info.encryptedData.bytes
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "not a PKCS#8 EncryptedPrivateKeyInfo")
        }
        guard parameters.keyDerivation.iterationCount <= maximumIterations else {
            throw DevIDPKIError(.malformed, "PBKDF2 iteration count is over the limit of \(maximumIterations)")
        }
        guard !ciphertext.isEmpty, ciphertext.count % PBES2Parameters.ivByteCount == 0 else {
            throw DevIDPKIError(.malformed, "encrypted data is not a whole number of AES blocks")
        }

        let key: SymmetricKey
        let iv: AES._CBC.IV
        do {
            key = try deriveKey(passphrase: passphrase, parameters: parameters)
            iv = try AES._CBC.IV(ivBytes: parameters.iv)
        } catch {
            throw DevIDPKIError(.malformed, "PBES2 key could not be derived")
        }

        let plaintext: [UInt8]
        do {
            plaintext = Array(try AES._CBC.decrypt(ciphertext, using: key, iv: iv))
        } catch {
            // Bad PKCS#7 padding: by far the most likely cause is a wrong key.
            throw DevIDPKIError(.wrongPassphrase, "private key could not be decrypted with this passphrase")
        }
        guard isPrivateKeyInfo(plaintext) else {
            throw DevIDPKIError(.wrongPassphrase, "private key could not be decrypted with this passphrase")
        }
        return plaintext
    }

    private static func deriveKey(passphrase: [UInt8], parameters: PBES2Parameters) throws -> SymmetricKey {
        // `rounds:` refuses fewer than 210,000 rounds; OpenSSL writes 2,048 and our default is 100,000, and the
        // count is bounded by the parser, so the unchecked variant is the right one here.
        try KDF.Insecure.PBKDF2.deriveKey(
            from: passphrase,
            salt: parameters.keyDerivation.salt,
            using: parameters.keyDerivation.prf.hashFunction,
            outputByteCount: parameters.cipher.keyByteCount,
            unsafeUncheckedRounds: parameters.keyDerivation.iterationCount
        )
    }

    private static func randomBytes(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// Whether `der` is exactly one PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` (RFC 5958 §2):
    ///
    /// ```
    /// OneAsymmetricKey ::= SEQUENCE {
    ///   version                   Version,            -- v1(0) or v2(1)
    ///   privateKeyAlgorithm       PrivateKeyAlgorithmIdentifier,
    ///   privateKey                PrivateKey,         -- OCTET STRING
    ///   attributes            [0] Attributes OPTIONAL,
    ///   ...,
    ///   [[2: publicKey        [1] PublicKey OPTIONAL ]],
    ///   ... }
    /// ```
    static func isPrivateKeyInfo(_ der: [UInt8]) -> Bool {
        do {
            let root = try DER.parse(der)
            try DER.sequence(root, identifier: .sequence) { nodes in
                let version = try Int(derEncoded: &nodes)
                guard version == 0 || version == 1 else {
                    throw ASN1Error.invalidASN1Object(reason: "unknown PrivateKeyInfo version")
                }
                _ = try PKCS5AlgorithmIdentifier(derEncoded: &nodes)
                _ = try ASN1OctetString(derEncoded: &nodes)
                while let node = nodes.next() {
                    guard node.identifier.tagClass == .contextSpecific else {
                        throw ASN1Error.invalidASN1Object(reason: "unexpected PrivateKeyInfo field")
                    }
                }
            }
            return true
        } catch {
            return false
        }
    }
}

/// `EncryptedPrivateKeyInfo` (RFC 5958 §3).
///
/// ```
/// EncryptedPrivateKeyInfo ::= SEQUENCE {
///   encryptionAlgorithm  EncryptionAlgorithmIdentifier,
///   encryptedData        EncryptedData }
///
/// EncryptionAlgorithmIdentifier ::= AlgorithmIdentifier
/// EncryptedData ::= OCTET STRING
/// ```
struct EncryptedPrivateKeyInfo: DERImplicitlyTaggable, Hashable, Sendable {
    static var defaultIdentifier: ASN1Identifier { .sequence }

    var encryptionAlgorithm: PKCS5AlgorithmIdentifier
    var encryptedData: ASN1OctetString

    init(encryptionAlgorithm: PKCS5AlgorithmIdentifier, encryptedData: ASN1OctetString) {
        self.encryptionAlgorithm = encryptionAlgorithm
        self.encryptedData = encryptedData
    }

    init(derEncoded rootNode: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
        self = try DER.sequence(rootNode, identifier: identifier) { nodes in
            let encryptionAlgorithm = try PKCS5AlgorithmIdentifier(derEncoded: &nodes)
            let encryptedData = try ASN1OctetString(derEncoded: &nodes)
            return EncryptedPrivateKeyInfo(encryptionAlgorithm: encryptionAlgorithm, encryptedData: encryptedData)
        }
    }

    func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
        try coder.appendConstructedNode(identifier: identifier) { coder in
            try coder.serialize(encryptionAlgorithm)
            try coder.serialize(encryptedData)
        }
    }
}
