import DevIDCore
public import SwiftASN1

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
        let oid = DERWriter.objectIdentifier(Self.basicResponseOID)
        let responseBytes = DERWriter.encode(
            DERWriter.sequence, oid + DERWriter.encode(DERWriter.octetString, basicResponse.derBytes))
        self.status = .successful
        self.basicResponse = basicResponse
        self.derBytes = DERWriter.encode(
            DERWriter.sequence,
            [DERWriter.enumerated, 0x01, 0x00] + DERWriter.encode(DERWriter.contextConstructed(0), responseBytes))
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
