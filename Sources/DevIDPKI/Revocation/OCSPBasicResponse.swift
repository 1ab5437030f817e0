import DevIDCore
import SwiftASN1
public import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// The signed part of a successful response (RFC 6960 §4.2.1).
///
/// ```
/// BasicOCSPResponse ::= SEQUENCE {
///   tbsResponseData      ResponseData,
///   signatureAlgorithm   AlgorithmIdentifier,
///   signature            BIT STRING,
///   certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
/// ResponseData ::= SEQUENCE {
///   version          [0] EXPLICIT Version DEFAULT v1,
///   responderID          ResponderID,             -- byKey [2] EXPLICIT OCTET STRING (SHA-1 of the key)
///   producedAt           GeneralizedTime,
///   responses            SEQUENCE OF SingleResponse,
///   responseExtensions [1] EXPLICIT Extensions OPTIONAL } -- the nonce, echoed
/// ```
public struct OCSPBasicResponse: Sendable, Hashable {
    /// SHA-1 of the responder's subjectPublicKey (ResponderID byKey), or nil when the responder is named.
    public let responderKeyHash: [UInt8]?
    /// The responder's name (ResponderID byName), or nil when it is identified by key.
    public let responderName: DistinguishedName?
    public let producedAt: Date
    public let responses: [OCSPSingleResponse]
    /// The echoed nonce's octets, if any.
    public let nonce: [UInt8]?
    /// The certificates sent with the response: the delegated responder's certificate.
    public let certificates: [Certificate]
    /// The BasicOCSPResponse DER.
    public let derBytes: [UInt8]

    private let tbsRange: Range<Int>
    private let signatureAlgorithm: ASN1ObjectIdentifier
    private let signature: [UInt8]

    /// Whether `signer`'s key made the signature.
    public func isSignatureValid(signer: Certificate) -> Bool {
        guard let algorithm = SignatureAlgorithms.algorithm(signatureAlgorithm) else { return false }
        return signer.publicKey.isValidSignature(signature, for: derBytes[tbsRange], signatureAlgorithm: algorithm)
    }

    /// The response for `id`, matched by CertID encoding.
    public func response(for id: OCSPCertificateID) -> OCSPSingleResponse? {
        responses.first { $0.certificateID.derBytes == id.derBytes }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.derBytes == rhs.derBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(derBytes) }

    init(
        responderKeyHash: [UInt8], producedAt: Date, responses: [OCSPSingleResponse], nonce: [UInt8]?,
        certificates: [Certificate], derBytes: [UInt8], tbsRange: Range<Int>, signatureAlgorithm: ASN1ObjectIdentifier,
        signature: [UInt8]
    ) {
        self.responderKeyHash = responderKeyHash
        self.responderName = nil
        self.producedAt = producedAt
        self.responses = responses
        self.nonce = nonce
        self.certificates = certificates
        self.derBytes = derBytes
        self.tbsRange = tbsRange
        self.signatureAlgorithm = signatureAlgorithm
        self.signature = signature
    }

    init(derEncoded bytes: [UInt8]) throws {
        let root = try DER.parse(bytes)
        (
            responderKeyHash, responderName, producedAt, responses, nonce, certificates, tbsRange, signatureAlgorithm,
            signature
        ) = try DER.sequence(root, identifier: .sequence) { nodes in
            guard let tbsNode = nodes.next() else { throw DevIDPKIError(.malformed, "no ResponseData") }
            let algorithm = try ASN1ObjectIdentifier(algorithmIdentifier: &nodes)
            let signature = try ASN1BitString(derEncoded: &nodes)
            var certificates: [Certificate] = []
            if let certsNode = nodes.next() {
                certificates = try DER.explicitlyTagged(certsNode, tagNumber: 0, tagClass: .contextSpecific) {
                    try DER.sequence(of: Certificate.self, identifier: .sequence, rootNode: $0)
                }
            }
            guard nodes.next() == nil else { throw DevIDPKIError(.malformed, "trailing fields in BasicOCSPResponse") }
            let range = tbsNode.encodedBytes.startIndex..<tbsNode.encodedBytes.endIndex
            let data = try Self.parseResponseData(tbsNode)
            return (
                data.keyHash, data.name, data.producedAt, data.responses, data.nonce, certificates, range, algorithm,
                Array(signature.bytes)
            )
        }
        self.derBytes = bytes
    }

    private static func parseResponseData(_ node: ASN1Node) throws -> (
        keyHash: [UInt8]?, name: DistinguishedName?, producedAt: Date, responses: [OCSPSingleResponse],
        nonce: [UInt8]?
    ) {
        try DER.sequence(node, identifier: .sequence) { fields in
            var next = fields.next()
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                next = fields.next()  // version
            }
            guard let responderID = next else { throw DevIDPKIError(.malformed, "no responderID") }
            var keyHash: [UInt8]?
            var name: DistinguishedName?
            if responderID.identifier == ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific) {
                keyHash = try DER.explicitlyTagged(responderID, tagNumber: 2, tagClass: .contextSpecific) {
                    Array(try ASN1OctetString(derEncoded: $0).bytes)
                }
            } else if responderID.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific) {
                name = try DER.explicitlyTagged(responderID, tagNumber: 1, tagClass: .contextSpecific) {
                    try DistinguishedName(derEncoded: $0)
                }
            } else {
                throw DevIDPKIError(.malformed, "unknown ResponderID")
            }
            guard let producedAtNode = fields.next() else { throw DevIDPKIError(.malformed, "no producedAt") }
            let producedAt = try Date(rfc5280Time: producedAtNode)
            guard let responsesNode = fields.next() else { throw DevIDPKIError(.malformed, "no responses") }
            let responses = try DER.sequence(
                of: OCSPSingleResponse.self, identifier: .sequence, rootNode: responsesNode)
            var nonce: [UInt8]?
            if let extensionsNode = fields.next() {
                let extensions = try DER.explicitlyTagged(extensionsNode, tagNumber: 1, tagClass: .contextSpecific) {
                    try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: $0)
                }
                if let ext = extensions.first(where: { $0.oid == OCSPRequest.nonceOID }) {
                    nonce = (try? ASN1OctetString(derEncoded: ext.value)).map { Array($0.bytes) } ?? Array(ext.value)
                }
            }
            guard fields.next() == nil else { throw DevIDPKIError(.malformed, "trailing fields in ResponseData") }
            return (keyHash, name, producedAt, responses, nonce)
        }
    }
}
