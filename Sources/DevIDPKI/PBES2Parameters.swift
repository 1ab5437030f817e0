import CryptoExtras
import SwiftASN1

/// `PBES2-params` (RFC 8018 §A.4), restricted to what DevID reads and writes: PBKDF2 as the key derivation
/// function and AES-CBC as the encryption scheme.
///
/// ```
/// PBES2-params ::= SEQUENCE {
///   keyDerivationFunc AlgorithmIdentifier {{PBES2-KDFs}},
///   encryptionScheme  AlgorithmIdentifier {{PBES2-Encs}} }
///
/// -- for the AES-CBC schemes (RFC 8018 §B.2.5 / NIST OIDs):
/// AES-IV ::= OCTET STRING (SIZE(16))
/// ```
///
/// Parsing throws ``DevIDPKIError`` with `.unsupportedAlgorithm` for a well-formed but foreign choice (scrypt,
/// DES, an unknown PRF) and a SwiftASN1 error or `.malformed` for anything that does not fit the grammar.
struct PBES2Parameters: DERImplicitlyTaggable, Hashable, Sendable {
    /// id-PBES2 (RFC 8018 §A.4).
    static let oid: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 5, 13]

    static var defaultIdentifier: ASN1Identifier { .sequence }

    /// The AES-CBC encryption schemes of RFC 8018 §B.2.5.
    enum Cipher: Hashable, Sendable, CaseIterable {
        case aes128CBC
        case aes192CBC
        case aes256CBC

        var oid: ASN1ObjectIdentifier {
            switch self {
            case .aes128CBC: [2, 16, 840, 1, 101, 3, 4, 1, 2]
            case .aes192CBC: [2, 16, 840, 1, 101, 3, 4, 1, 22]
            case .aes256CBC: [2, 16, 840, 1, 101, 3, 4, 1, 42]
            }
        }

        var keyByteCount: Int {
            switch self {
            case .aes128CBC: 16
            case .aes192CBC: 24
            case .aes256CBC: 32
            }
        }

        init?(oid: ASN1ObjectIdentifier) {
            guard let cipher = Self.allCases.first(where: { $0.oid == oid }) else { return nil }
            self = cipher
        }
    }

    /// AES's block size, and so the IV's length.
    static let ivByteCount = 16

    var keyDerivation: PBKDF2Parameters
    var cipher: Cipher
    var iv: [UInt8]

    init(keyDerivation: PBKDF2Parameters, cipher: Cipher, iv: [UInt8]) {
        self.keyDerivation = keyDerivation
        self.cipher = cipher
        self.iv = iv
    }

    init(derEncoded rootNode: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
        self = try DER.sequence(rootNode, identifier: identifier) { nodes in
            let kdf = try PKCS5AlgorithmIdentifier(derEncoded: &nodes)
            guard kdf.algorithm == PBKDF2Parameters.oid else {
                throw DevIDPKIError(.unsupportedAlgorithm, "PBES2 key derivation is not PBKDF2")
            }
            guard let kdfParameters = kdf.parameters else {
                throw DevIDPKIError(.malformed, "PBKDF2 parameters are missing")
            }
            let keyDerivation = try PBKDF2Parameters(asn1Any: kdfParameters)

            let scheme = try PKCS5AlgorithmIdentifier(derEncoded: &nodes)
            guard let cipher = Cipher(oid: scheme.algorithm) else {
                throw DevIDPKIError(.unsupportedAlgorithm, "PBES2 encryption scheme is not AES-CBC")
            }
            guard let schemeParameters = scheme.parameters else {
                throw DevIDPKIError(.malformed, "AES-CBC IV is missing")
            }
            let iv = try ASN1OctetString(asn1Any: schemeParameters)
            guard iv.bytes.count == Self.ivByteCount else {
                throw DevIDPKIError(.malformed, "AES-CBC IV is not 16 bytes")
            }
            if let keyLength = keyDerivation.keyLength, keyLength != cipher.keyByteCount {
                throw DevIDPKIError(.malformed, "PBKDF2 keyLength does not match the cipher")
            }
            return PBES2Parameters(keyDerivation: keyDerivation, cipher: cipher, iv: Array(iv.bytes))
        }
    }

    func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
        try coder.appendConstructedNode(identifier: identifier) { coder in
            try coder.serialize(
                PKCS5AlgorithmIdentifier(algorithm: PBKDF2Parameters.oid, parameters: ASN1Any(erasing: keyDerivation))
            )
            try coder.serialize(
                PKCS5AlgorithmIdentifier(
                    algorithm: cipher.oid,
                    parameters: ASN1Any(erasing: ASN1OctetString(contentBytes: iv[...]))
                )
            )
        }
    }
}

/// `PBKDF2-params` (RFC 8018 §A.2).
///
/// ```
/// PBKDF2-params ::= SEQUENCE {
///   salt CHOICE {
///     specified OCTET STRING,
///     otherSource AlgorithmIdentifier {{PBKDF2-SaltSources}} },
///   iterationCount INTEGER (1..MAX),
///   keyLength INTEGER (1..MAX) OPTIONAL,
///   prf AlgorithmIdentifier {{PBKDF2-PRFs}} DEFAULT algid-hmacWithSHA1 }
/// ```
///
/// Only a `specified` salt is supported. An explicitly encoded hmacWithSHA1 PRF is accepted although DER says a
/// DEFAULT value is left out, because some encoders write it.
struct PBKDF2Parameters: DERImplicitlyTaggable, Hashable, Sendable {
    /// id-PBKDF2 (RFC 8018 §A.2).
    static let oid: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 5, 12]

    static var defaultIdentifier: ASN1Identifier { .sequence }

    /// Iteration counts above this are refused when parsing: they mean a corrupt file or a denial of service.
    static let maximumIterationCount = 10_000_000

    /// The HMAC pseudorandom functions of RFC 8018 §B.1.
    enum PRF: Hashable, Sendable, CaseIterable {
        case hmacWithSHA1
        case hmacWithSHA256
        case hmacWithSHA384
        case hmacWithSHA512

        var oid: ASN1ObjectIdentifier {
            switch self {
            case .hmacWithSHA1: [1, 2, 840, 113_549, 2, 7]
            case .hmacWithSHA256: [1, 2, 840, 113_549, 2, 9]
            case .hmacWithSHA384: [1, 2, 840, 113_549, 2, 10]
            case .hmacWithSHA512: [1, 2, 840, 113_549, 2, 11]
            }
        }

        var hashFunction: KDF.Insecure.PBKDF2.HashFunction {
            switch self {
            case .hmacWithSHA1: .insecureSHA1
            case .hmacWithSHA256: .sha256
            case .hmacWithSHA384: .sha384
            case .hmacWithSHA512: .sha512
            }
        }

        init?(oid: ASN1ObjectIdentifier) {
            guard let prf = Self.allCases.first(where: { $0.oid == oid }) else { return nil }
            self = prf
        }
    }

    var salt: [UInt8]
    var iterationCount: Int
    var keyLength: Int?
    var prf: PRF

    init(salt: [UInt8], iterationCount: Int, keyLength: Int?, prf: PRF) {
        self.salt = salt
        self.iterationCount = iterationCount
        self.keyLength = keyLength
        self.prf = prf
    }

    init(derEncoded rootNode: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
        self = try DER.sequence(rootNode, identifier: identifier) { nodes in
            guard let saltNode = nodes.next() else {
                throw DevIDPKIError(.malformed, "PBKDF2 salt is missing")
            }
            guard saltNode.identifier == ASN1OctetString.defaultIdentifier else {
                throw DevIDPKIError(.unsupportedAlgorithm, "PBKDF2 salt is not a specified OCTET STRING")
            }
            let salt = try ASN1OctetString(derEncoded: saltNode)
            guard !salt.bytes.isEmpty else {
                throw DevIDPKIError(.malformed, "PBKDF2 salt is empty")
            }

            let iterationCount = try Int(derEncoded: &nodes)
            guard (1...Self.maximumIterationCount).contains(iterationCount) else {
                throw DevIDPKIError(.malformed, "PBKDF2 iteration count is out of range")
            }

            let keyLength: Int? = try DER.optionalImplicitlyTagged(&nodes)
            if let keyLength, !(1...64).contains(keyLength) {
                throw DevIDPKIError(.malformed, "PBKDF2 keyLength is out of range")
            }

            var prf = PRF.hmacWithSHA1
            if let prfNode = nodes.next() {
                let algorithm = try PKCS5AlgorithmIdentifier(derEncoded: prfNode)
                guard let known = PRF(oid: algorithm.algorithm) else {
                    throw DevIDPKIError(.unsupportedAlgorithm, "PBKDF2 PRF is not HMAC-SHA1/256/384/512")
                }
                // RFC 8018 §B.1: the parameters are NULL; accept them absent too.
                if let parameters = algorithm.parameters {
                    _ = try ASN1Null(asn1Any: parameters)
                }
                prf = known
            }
            return PBKDF2Parameters(
                salt: Array(salt.bytes),
                iterationCount: iterationCount,
                keyLength: keyLength,
                prf: prf
            )
        }
    }

    func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
        try coder.appendConstructedNode(identifier: identifier) { coder in
            try coder.serialize(ASN1OctetString(contentBytes: salt[...]))
            try coder.serialize(iterationCount)
            if let keyLength {
                try coder.serialize(keyLength)
            }
            // DER leaves a DEFAULT value out.
            if prf != .hmacWithSHA1 {
                try coder.serialize(
                    PKCS5AlgorithmIdentifier(algorithm: prf.oid, parameters: ASN1Any(erasing: ASN1Null()))
                )
            }
        }
    }
}

/// `AlgorithmIdentifier` (RFC 5280 §4.1.1.2) as PKCS#5 and PKCS#8 use it. X509 has its own, but it is internal there.
///
/// ```
/// AlgorithmIdentifier ::= SEQUENCE {
///   algorithm  OBJECT IDENTIFIER,
///   parameters ANY DEFINED BY algorithm OPTIONAL }
/// ```
struct PKCS5AlgorithmIdentifier: DERImplicitlyTaggable, Hashable, Sendable {
    static var defaultIdentifier: ASN1Identifier { .sequence }

    var algorithm: ASN1ObjectIdentifier
    var parameters: ASN1Any?

    init(algorithm: ASN1ObjectIdentifier, parameters: ASN1Any?) {
        self.algorithm = algorithm
        self.parameters = parameters
    }

    init(derEncoded rootNode: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
        self = try DER.sequence(rootNode, identifier: identifier) { nodes in
            let algorithm = try ASN1ObjectIdentifier(derEncoded: &nodes)
            let parameters = nodes.next().map { ASN1Any(derEncoded: $0) }
            return PKCS5AlgorithmIdentifier(algorithm: algorithm, parameters: parameters)
        }
    }

    func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
        try coder.appendConstructedNode(identifier: identifier) { coder in
            try coder.serialize(algorithm)
            if let parameters {
                try coder.serialize(parameters)
            }
        }
    }
}
