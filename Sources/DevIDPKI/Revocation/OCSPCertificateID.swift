import Crypto
import DevIDCore
public import SwiftASN1
public import X509

/// The hash algorithms an OCSP CertID may use (RFC 6960 §4.1.1); `openssl ocsp` defaults to SHA-1.
public enum OCSPHashAlgorithm: Sendable, Hashable, CaseIterable {
    case sha1
    case sha256
    case sha384
    case sha512

    public var oid: ASN1ObjectIdentifier {
        switch self {
        case .sha1: [1, 3, 14, 3, 2, 26]
        case .sha256: [2, 16, 840, 1, 101, 3, 4, 2, 1]
        case .sha384: [2, 16, 840, 1, 101, 3, 4, 2, 2]
        case .sha512: [2, 16, 840, 1, 101, 3, 4, 2, 3]
        }
    }

    public init?(oid: ASN1ObjectIdentifier) {
        guard let algorithm = Self.allCases.first(where: { $0.oid == oid }) else { return nil }
        self = algorithm
    }

    func hash(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .sha1: Array(Insecure.SHA1.hash(data: bytes))
        case .sha256: Array(SHA256.hash(data: bytes))
        case .sha384: Array(SHA384.hash(data: bytes))
        case .sha512: Array(SHA512.hash(data: bytes))
        }
    }
}

/// An OCSP CertID: which certificate a request asks about (RFC 6960 §4.1.1).
///
/// ```
/// CertID ::= SEQUENCE {
///   hashAlgorithm   AlgorithmIdentifier,
///   issuerNameHash  OCTET STRING, -- hash of the issuer's DN
///   issuerKeyHash   OCTET STRING, -- hash of the issuer's subjectPublicKey BIT STRING value
///   serialNumber    CertificateSerialNumber }
/// ```
///
/// A response must name each certificate with the request's CertID, so the parsed encoding is kept and echoed
/// byte for byte.
public struct OCSPCertificateID: Sendable, Hashable {
    /// Nil for a hash algorithm DevID does not know; the responder answers `unknown` for such a CertID.
    public let hashAlgorithm: OCSPHashAlgorithm?
    public let issuerNameHash: [UInt8]
    public let issuerKeyHash: [UInt8]
    public let serial: Certificate.SerialNumber
    /// The CertID's DER, as received or as built.
    public let derBytes: [UInt8]

    /// The CertID of `serial` issued by `issuer`, hashed with `hashAlgorithm`.
    public init(
        issuer: Certificate, serial: Certificate.SerialNumber, hashAlgorithm: OCSPHashAlgorithm = .sha1
    ) throws(DevIDPKIError) {
        let nameHash = hashAlgorithm.hash(try CertificateFields.subjectDER(of: issuer))
        let keyHash = hashAlgorithm.hash(try CertificateFields.subjectPublicKeyBits(of: issuer.publicKey))
        var serializer = DER.Serializer()
        do {
            try serializer.appendConstructedNode(identifier: .sequence) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.serialize(hashAlgorithm.oid)
                    try coder.serialize(ASN1Null())
                }
                try coder.serialize(ASN1OctetString(contentBytes: nameHash[...]))
                try coder.serialize(ASN1OctetString(contentBytes: keyHash[...]))
                try coder.serialize(serial.bytes)
            }
        } catch {
            throw DevIDPKIError(.malformed, "CertID could not be encoded")
        }
        self.hashAlgorithm = hashAlgorithm
        self.issuerNameHash = nameHash
        self.issuerKeyHash = keyHash
        self.serial = serial
        self.derBytes = serializer.serializedBytes
    }

    /// The CertID of `certificate`, which `issuer` issued.
    public init(certificate: Certificate, issuer: Certificate, hashAlgorithm: OCSPHashAlgorithm = .sha1)
        throws(DevIDPKIError)
    {
        try self.init(issuer: issuer, serial: certificate.serialNumber, hashAlgorithm: hashAlgorithm)
    }

    init(
        hashAlgorithm: OCSPHashAlgorithm?, issuerNameHash: [UInt8], issuerKeyHash: [UInt8],
        serial: Certificate.SerialNumber, derBytes: [UInt8]
    ) {
        self.hashAlgorithm = hashAlgorithm
        self.issuerNameHash = issuerNameHash
        self.issuerKeyHash = issuerKeyHash
        self.serial = serial
        self.derBytes = derBytes
    }
}

extension OCSPCertificateID: DERParseable {
    public init(derEncoded node: ASN1Node) throws {
        self = try DER.sequence(node, identifier: .sequence) { fields in
            guard let algorithmNode = fields.next() else { throw DevIDPKIError(.malformed, "CertID has no algorithm") }
            let oid = try DER.sequence(algorithmNode, identifier: .sequence) { parts in
                let oid = try ASN1ObjectIdentifier(derEncoded: &parts)
                if let parameters = parts.next() {
                    // Absent or NULL (RFC 5754 §2 allows both for the SHA-2 family).
                    _ = try ASN1Null(derEncoded: parameters)
                }
                guard parts.next() == nil else { throw DevIDPKIError(.malformed, "CertID algorithm is too long") }
                return oid
            }
            let nameHash = try ASN1OctetString(derEncoded: &fields)
            let keyHash = try ASN1OctetString(derEncoded: &fields)
            let serial = try ArraySlice<UInt8>(derEncoded: &fields)
            guard fields.next() == nil else { throw DevIDPKIError(.malformed, "CertID has trailing fields") }
            return OCSPCertificateID(
                hashAlgorithm: OCSPHashAlgorithm(oid: oid), issuerNameHash: Array(nameHash.bytes),
                issuerKeyHash: Array(keyHash.bytes), serial: Certificate.SerialNumber(bytes: serial),
                derBytes: Array(node.encodedBytes))
        }
    }
}
