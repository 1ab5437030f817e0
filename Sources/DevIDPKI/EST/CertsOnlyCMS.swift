public import SwiftASN1
public import X509

/// The degenerate "certs-only" CMS SignedData that EST uses to carry certificates (RFC 7030 §4.1.3, §4.2.3;
/// RFC 5652 §5): the body of `/cacerts` and of the `/simpleenroll` and `/simplereenroll` responses.
///
/// ```
/// ContentInfo ::= SEQUENCE {
///   contentType id-signedData,                  -- 1.2.840.113549.1.7.2
///   content [0] EXPLICIT SignedData }
///
/// SignedData ::= SEQUENCE {
///   version CMSVersion,                         -- 1
///   digestAlgorithms SET OF AlgorithmIdentifier, -- empty
///   encapContentInfo SEQUENCE {
///     eContentType id-data },                   -- 1.2.840.113549.1.7.1, no eContent
///   certificates [0] IMPLICIT SET OF Certificate,
///   -- no crls
///   signerInfos SET OF SignerInfo }             -- empty
/// ```
///
/// Encoding writes DER, so the certificates come out sorted by their encoding (X.690 §11.6) rather than in the order
/// given; CMS gives the order no meaning. Parsing accepts BER (definite or indefinite lengths) and the certificates in
/// any order (`openssl crl2pkcs7` keeps file order), keeps them in the order found, and ignores anything that a
/// certs-only reader does not need (crls, digest algorithms, signer infos).
public struct CertsOnlyCMS: Hashable, Sendable {
    /// id-signedData (RFC 5652 §5.1).
    public static let signedDataOID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 7, 2]
    /// id-data (RFC 5652 §4).
    public static let dataOID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 7, 1]

    public var certificates: [Certificate]

    public init(certificates: [Certificate]) {
        self.certificates = certificates
    }

    /// The DER encoding: what an EST server base64-encodes as `application/pkcs7-mime; smime-type=certs-only`.
    public func derBytes() throws(DevIDPKIError) -> [UInt8] {
        var serializer = DER.Serializer()
        do {
            try serializer.serialize(self)
        } catch {
            throw DevIDPKIError(.malformed, "certs-only CMS could not be encoded")
        }
        return serializer.serializedBytes
    }

    /// Reads a certs-only CMS from DER or BER bytes (already base64-decoded).
    ///
    /// Throws `.malformed` for anything that is not a SignedData ContentInfo holding X.509 certificates.
    public init(derEncoded bytes: [UInt8]) throws(DevIDPKIError) {
        do {
            self = try CertsOnlyCMS(derEncoded: BER.parse(bytes))
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "body is not a certs-only CMS SignedData")
        }
    }
}

extension CertsOnlyCMS {
    /// The bytes ``derBytes()`` gives for the certificates whose DER encodings these are, without serializing any
    /// certificate again: an enrollment answers with the LDevID it has just encoded for the registry, `/cacerts`
    /// with CA certificates encoded once.
    public static func derBytes(encodedCertificates: [[UInt8]]) throws(DevIDPKIError) -> [UInt8] {
        var serializer = DER.Serializer()
        do {
            try serialize(encodedCertificates.map(EncodedDER.init), into: &serializer)
        } catch {
            throw DevIDPKIError(.malformed, "certs-only CMS could not be encoded")
        }
        return serializer.serializedBytes
    }

    /// An element already in DER, written as it is.
    private struct EncodedDER: DERSerializable {
        let bytes: [UInt8]
        func serialize(into coder: inout DER.Serializer) { coder.serializeRawBytes(bytes) }
    }
}

extension CertsOnlyCMS: DERSerializable {
    public func serialize(into coder: inout DER.Serializer) throws {
        try Self.serialize(certificates, into: &coder)
    }

    private static func serialize(_ certificates: [some DERSerializable], into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(Self.signedDataOID)
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.serialize(1)  // CMSVersion v1: no attribute certificates, eContentType id-data
                    coder.appendConstructedNode(identifier: .set) { _ in }  // digestAlgorithms
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(Self.dataOID)  // eContentType, and no eContent
                    }
                    // serializeSetOf sorts the members by encoding, as DER requires of a SET OF.
                    try coder.serializeSetOf(
                        certificates,
                        identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                    )
                    coder.appendConstructedNode(identifier: .set) { _ in }  // signerInfos
                }
            }
        }
    }
}

extension CertsOnlyCMS: DERParseable {
    /// Parses the ContentInfo node. Unlike `DER.set(of:)` this does not insist on DER's SET OF order.
    public init(derEncoded rootNode: ASN1Node) throws {
        self = try DER.sequence(rootNode, identifier: .sequence) { nodes in
            let contentType = try ASN1ObjectIdentifier(derEncoded: &nodes)
            guard contentType == Self.signedDataOID else {
                throw DevIDPKIError(.malformed, "CMS content is not SignedData")
            }
            return try DER.explicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { signedData in
                try DER.sequence(signedData, identifier: .sequence) { fields in
                    _ = try Int(derEncoded: &fields)  // version
                    guard let digestAlgorithms = fields.next(), digestAlgorithms.identifier == .set else {
                        throw DevIDPKIError(.malformed, "SignedData digestAlgorithms is missing")
                    }
                    guard let encapContentInfo = fields.next(), encapContentInfo.identifier == .sequence else {
                        throw DevIDPKIError(.malformed, "SignedData encapContentInfo is missing")
                    }
                    let certificatesTag = ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                    var certificates: [Certificate] = []
                    var next = fields.next()
                    if let node = next, node.identifier == certificatesTag {
                        guard case .constructed(let members) = node.content else {
                            throw DevIDPKIError(.malformed, "SignedData certificates is not a SET")
                        }
                        for member in members {
                            // CertificateChoices: only a plain X.509 certificate (a SEQUENCE) is of use here.
                            guard member.identifier == .sequence else {
                                throw DevIDPKIError(.malformed, "SignedData holds a certificate that is not X.509")
                            }
                            // Re-read each certificate as strict DER from its own bytes: a signature covers them.
                            certificates.append(try Certificate(derEncoded: Array(member.encodedBytes)))
                        }
                        next = fields.next()
                    }
                    if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific)
                    {
                        next = fields.next()  // crls: not used by a certs-only reader
                    }
                    guard let signerInfos = next, signerInfos.identifier == .set else {
                        throw DevIDPKIError(.malformed, "SignedData signerInfos is missing")
                    }
                    guard fields.next() == nil else {
                        throw DevIDPKIError(.malformed, "SignedData has trailing fields")
                    }
                    return CertsOnlyCMS(certificates: certificates)
                }
            }
        }
    }
}
