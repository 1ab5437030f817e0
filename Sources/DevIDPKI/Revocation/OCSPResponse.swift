#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import DevIDCore
public import SwiftASN1
public import X509

/// What an OCSP responder says about one certificate (RFC 6960 §2.2).
public enum OCSPCertificateStatus: Sendable, Hashable {
    /// Not revoked (the responder knows the certificate and it is not on hold or revoked).
    case good
    /// Revoked at the given time for the given reason; `unspecified` is sent without a reason.
    case revoked(at: Date, reason: RevocationReason)
    /// The responder does not know the certificate (another issuer, never issued, or an unsupported CertID hash).
    case unknown
}

/// A DER OCSP response (RFC 6960 §4.2.1): a status, and for `successful` a signed BasicOCSPResponse.
///
/// ```
/// OCSPResponse ::= SEQUENCE {
///   responseStatus   OCSPResponseStatus,          -- ENUMERATED
///   responseBytes    [0] EXPLICIT ResponseBytes OPTIONAL }
/// ResponseBytes ::= SEQUENCE {
///   responseType     OBJECT IDENTIFIER,           -- id-pkix-ocsp-basic
///   response         OCTET STRING }               -- DER BasicOCSPResponse
/// ```
///
/// Made by ``OCSPResponder``; the error responses are constants. ``init(derEncoded:)`` reads a response back (tests,
/// agents, `devid cert status`).
public struct OCSPResponse: Sendable, Hashable {
    /// OCSPResponseStatus (RFC 6960 §4.2.1); 4 is not used.
    public enum Status: Int, Sendable, Hashable, CaseIterable {
        case successful = 0
        case malformedRequest = 1
        case internalError = 2
        case tryLater = 3
        case sigRequired = 5
        case unauthorized = 6
    }

    /// The media type of the HTTP body (RFC 6960 §A.1).
    public static let mediaType = "application/ocsp-response"
    /// id-pkix-ocsp-basic (RFC 6960 §4.2.1).
    public static let basicResponseOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 1]

    public let status: Status
    /// The signed response for `successful`, nil otherwise.
    public let basicResponse: OCSPBasicResponse?
    /// The complete DER: the HTTP body.
    public let derBytes: [UInt8]

    /// A status-only response (no responseBytes), for any status but `successful`.
    private init(unsuccessful status: Status) {
        self.status = status
        self.basicResponse = nil
        self.derBytes = [DERWriter.sequence, 0x03, DERWriter.enumerated, 0x01, UInt8(status.rawValue)]
    }

    init(successful basicResponse: OCSPBasicResponse) {
        let oid = OCSPRequest.oidNode(Self.basicResponseOID)
        let responseBytes = OCSPRequest.node(
            DERWriter.sequence, oid + OCSPRequest.node(DERWriter.octetString, basicResponse.derBytes))
        self.status = .successful
        self.basicResponse = basicResponse
        self.derBytes = OCSPRequest.node(
            DERWriter.sequence,
            [DERWriter.enumerated, 0x01, 0x00] + OCSPRequest.node(DERWriter.contextConstructed(0), responseBytes))
    }

    /// The request did not parse (answer to every ``OCSPRequestError``).
    public static let malformedRequest = OCSPResponse(unsuccessful: .malformedRequest)
    /// The responder failed (a status lookup or the signature failed).
    public static let internalError = OCSPResponse(unsuccessful: .internalError)
    /// The responder cannot answer now (e.g. its signing certificate is being rotated).
    public static let tryLater = OCSPResponse(unsuccessful: .tryLater)
    /// The responder is not authoritative for anything asked (RFC 5019 §2.2.3).
    public static let unauthorized = OCSPResponse(unsuccessful: .unauthorized)

    /// Reads a DER OCSPResponse. Throws ``DevIDPKIError`` `.malformed` for anything else.
    public init(derEncoded bytes: [UInt8]) throws(DevIDPKIError) {
        do {
            let root = try DER.parse(bytes)
            self = try DER.sequence(root, identifier: .sequence) { nodes in
                let code = try Int(derEncoded: &nodes, withIdentifier: .enumerated)
                guard let status = Status(rawValue: code) else {
                    throw DevIDPKIError(.malformed, "unknown OCSP response status \(code)")
                }
                guard let responseBytes = nodes.next() else {
                    guard status != .successful else {
                        throw DevIDPKIError(.malformed, "successful OCSP response without responseBytes")
                    }
                    return OCSPResponse(unsuccessful: status)
                }
                guard status == .successful, nodes.next() == nil else {
                    throw DevIDPKIError(.malformed, "unexpected fields in OCSP response")
                }
                let basic = try DER.explicitlyTagged(responseBytes, tagNumber: 0, tagClass: .contextSpecific) { node in
                    try DER.sequence(node, identifier: .sequence) { fields in
                        let type = try ASN1ObjectIdentifier(derEncoded: &fields)
                        guard type == Self.basicResponseOID else {
                            throw DevIDPKIError(.malformed, "OCSP response type is not id-pkix-ocsp-basic")
                        }
                        let response = try ASN1OctetString(derEncoded: &fields)
                        return try OCSPBasicResponse(derEncoded: Array(response.bytes))
                    }
                }
                return OCSPResponse(successful: basic)
            }
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "not a DER OCSP response")
        }
    }

    /// Two responses are equal when their encodings are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.derBytes == rhs.derBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(derBytes) }
}

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
        (responderKeyHash, responderName, producedAt, responses, nonce, certificates, tbsRange, signatureAlgorithm,
            signature) = try DER.sequence(root, identifier: .sequence) { nodes in
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
            let responses = try DER.sequence(of: OCSPSingleResponse.self, identifier: .sequence, rootNode: responsesNode)
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

/// One certificate's answer (RFC 6960 §4.2.1).
///
/// ```
/// SingleResponse ::= SEQUENCE {
///   certID             CertID,
///   certStatus         CHOICE { good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT NULL },
///   thisUpdate         GeneralizedTime,
///   nextUpdate     [0] EXPLICIT GeneralizedTime OPTIONAL,
///   singleExtensions [1] EXPLICIT Extensions OPTIONAL }
/// RevokedInfo ::= SEQUENCE {
///   revocationTime     GeneralizedTime,
///   revocationReason [0] EXPLICIT CRLReason OPTIONAL }
/// ```
public struct OCSPSingleResponse: Sendable, Hashable {
    public let certificateID: OCSPCertificateID
    public let status: OCSPCertificateStatus
    public let thisUpdate: Date
    public let nextUpdate: Date?

    public init(certificateID: OCSPCertificateID, status: OCSPCertificateStatus, thisUpdate: Date, nextUpdate: Date?) {
        self.certificateID = certificateID
        self.status = status
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
    }
}

extension OCSPSingleResponse: DERParseable {
    public init(derEncoded node: ASN1Node) throws {
        self = try DER.sequence(node, identifier: .sequence) { fields in
            guard let idNode = fields.next() else { throw DevIDPKIError(.malformed, "no CertID") }
            let id = try OCSPCertificateID(derEncoded: idNode)
            guard let statusNode = fields.next() else { throw DevIDPKIError(.malformed, "no certStatus") }
            let status: OCSPCertificateStatus
            switch statusNode.identifier {
            case ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific):
                status = .good
            case ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific):
                status = .unknown
            case ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific):
                status = try DER.sequence(statusNode, identifier: statusNode.identifier) { info in
                    guard let timeNode = info.next() else { throw DevIDPKIError(.malformed, "no revocationTime") }
                    let time = try Date(rfc5280Time: timeNode)
                    var reason = RevocationReason.unspecified
                    if let reasonNode = info.next() {
                        let code = try DER.explicitlyTagged(reasonNode, tagNumber: 0, tagClass: .contextSpecific) {
                            try Int(derEncoded: $0, withIdentifier: .enumerated)
                        }
                        guard let known = RevocationReason(code: code) else {
                            throw DevIDPKIError(.malformed, "unknown revocation reason")
                        }
                        reason = known
                    }
                    return .revoked(at: time, reason: reason)
                }
            default:
                throw DevIDPKIError(.malformed, "unknown certStatus")
            }
            guard let thisUpdateNode = fields.next() else { throw DevIDPKIError(.malformed, "no thisUpdate") }
            let thisUpdate = try Date(rfc5280Time: thisUpdateNode)
            var nextUpdate: Date?
            if let node = fields.next() {
                if node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                    nextUpdate = try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) {
                        try Date(rfc5280Time: $0)
                    }
                    _ = fields.next()  // singleExtensions
                }
            }
            guard fields.next() == nil else { throw DevIDPKIError(.malformed, "trailing fields in SingleResponse") }
            return OCSPSingleResponse(certificateID: id, status: status, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        }
    }
}
