import DevIDCore
import DevIDPKCS11
import SwiftASN1
import X509

/// Signs CRLs and OCSP responses with a `Certificate.PrivateKey` through its public
/// `sign(bytes:signatureAlgorithm:)` — so an HSM behind `CustomPrivateKey` signs them too.
///
/// swift-certificates keeps `AlgorithmIdentifier` and the key's default algorithm internal, so the signature
/// algorithm is chosen here from the public key (the same choice swift-certificates makes for certificates) and its
/// AlgorithmIdentifier written by hand.
struct CASigner: Sendable {
    let key: Certificate.PrivateKey
    let algorithm: Certificate.SignatureAlgorithm
    /// The signature algorithm's OID.
    let algorithmOID: ASN1ObjectIdentifier
    /// The AlgorithmIdentifier node, DER: what `signature` and `signatureAlgorithm` fields hold.
    let algorithmIdentifierDER: [UInt8]

    init(_ key: Certificate.PrivateKey) throws(DevIDPKIError) {
        guard let keyAlgorithm = KeyAlgorithm(key.publicKey) else {
            throw DevIDPKIError(.unsupportedAlgorithm, "the signing key is not P-256, P-384, Ed25519 or RSA")
        }
        let algorithm: Certificate.SignatureAlgorithm
        switch keyAlgorithm {
        case .p256: algorithm = .ecdsaWithSHA256
        case .p384: algorithm = .ecdsaWithSHA384
        case .ed25519: algorithm = .ed25519
        default: algorithm = .sha256WithRSAEncryption
        }
        self.key = key
        self.algorithm = algorithm
        // Sign-time lookups cannot fail: every algorithm chosen above is in the table.
        self.algorithmIdentifierDER = SignatureAlgorithms.identifierDER(algorithm) ?? []
        self.algorithmOID = SignatureAlgorithms.oid(algorithm) ?? []
    }

    /// The raw signature over `bytes` (DER ECDSA-Sig-Value for ECDSA).
    func signature(over bytes: [UInt8]) throws(DevIDPKIError) -> [UInt8] {
        do {
            return try key.sign(bytes: bytes, signatureAlgorithm: algorithm).rawRepresentation
        } catch let error as PKCS11Error {
            throw DevIDPKIError(error)
        } catch {
            throw DevIDPKIError(.invalidSignature, "the signing key could not sign")
        }
    }

    /// `SEQUENCE { tbs, signatureAlgorithm, signature BIT STRING, trailer }`: the signed envelope of a CRL or a
    /// BasicOCSPResponse (`trailer` holds anything after the signature, such as OCSP's `[0] certs`).
    ///
    /// Returns the envelope, where the TBS sits in it, and the raw signature.
    func signedEnvelope(tbs: [UInt8], trailer: [UInt8] = []) throws(DevIDPKIError) -> (
        der: [UInt8], tbsRange: Range<Int>, signature: [UInt8]
    ) {
        let signature = try signature(over: tbs)
        let bitStringLength = DERWriter.nodeLength(contentLength: signature.count + 1)
        let contentLength = tbs.count + algorithmIdentifierDER.count + bitStringLength + trailer.count
        var writer = DERWriter(capacity: DERWriter.nodeLength(contentLength: contentLength))
        writer.header(DERWriter.sequence, length: contentLength)
        let tbsStart = writer.bytes.count
        writer.append(contentsOf: tbs)
        writer.append(contentsOf: algorithmIdentifierDER)
        writer.header(DERWriter.bitString, length: signature.count + 1)
        writer.append(0)  // no unused bits
        writer.append(contentsOf: signature)
        writer.append(contentsOf: trailer)
        return (writer.bytes, tbsStart..<(tbsStart + tbs.count), signature)
    }
}

/// The signature AlgorithmIdentifiers DevID writes and reads back (RFC 5758 §3.2, RFC 8410 §3, RFC 4055 §5).
enum SignatureAlgorithms {
    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10_045, 4, 3, 2]
    static let ecdsaWithSHA384: ASN1ObjectIdentifier = [1, 2, 840, 10_045, 4, 3, 3]
    static let ecdsaWithSHA512: ASN1ObjectIdentifier = [1, 2, 840, 10_045, 4, 3, 4]
    static let ed25519: ASN1ObjectIdentifier = [1, 3, 101, 112]
    static let sha256WithRSAEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 11]
    static let sha384WithRSAEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 12]
    static let sha512WithRSAEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 13]

    private static let table: [(ASN1ObjectIdentifier, Certificate.SignatureAlgorithm, nullParameters: Bool)] = [
        (ecdsaWithSHA256, .ecdsaWithSHA256, false),
        (ecdsaWithSHA384, .ecdsaWithSHA384, false),
        (ecdsaWithSHA512, .ecdsaWithSHA512, false),
        (ed25519, .ed25519, false),
        (sha256WithRSAEncryption, .sha256WithRSAEncryption, true),
        (sha384WithRSAEncryption, .sha384WithRSAEncryption, true),
        (sha512WithRSAEncryption, .sha512WithRSAEncryption, true),
    ]

    /// The DER AlgorithmIdentifier for `algorithm`: ECDSA and EdDSA without parameters, RSA with NULL.
    static func identifierDER(_ algorithm: Certificate.SignatureAlgorithm) -> [UInt8]? {
        guard let entry = table.first(where: { $0.1 == algorithm }) else { return nil }
        var serializer = DER.Serializer()
        try? serializer.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(entry.0)
            if entry.nullParameters { try coder.serialize(ASN1Null()) }
        }
        return serializer.serializedBytes
    }

    static func oid(_ algorithm: Certificate.SignatureAlgorithm) -> ASN1ObjectIdentifier? {
        table.first(where: { $0.1 == algorithm })?.0
    }

    /// The algorithm an AlgorithmIdentifier's OID names, or nil for one DevID does not verify.
    static func algorithm(_ oid: ASN1ObjectIdentifier) -> Certificate.SignatureAlgorithm? {
        table.first(where: { $0.0 == oid })?.1
    }
}
