import DevIDCore
public import SwiftASN1
import X509

/// An OCSP request (RFC 6960 §4.1.1), reduced to what a responder acts on: the CertIDs asked about and the nonce.
///
/// ```
/// OCSPRequest ::= SEQUENCE {
///   tbsRequest                TBSRequest,
///   optionalSignature     [0] EXPLICIT Signature OPTIONAL }   -- accepted, not verified
/// TBSRequest ::= SEQUENCE {
///   version               [0] EXPLICIT Version DEFAULT v1,
///   requestorName         [1] EXPLICIT GeneralName OPTIONAL,  -- ignored
///   requestList               SEQUENCE OF Request,
///   requestExtensions     [2] EXPLICIT Extensions OPTIONAL }  -- id-pkix-ocsp-nonce is read
/// Request ::= SEQUENCE {
///   reqCert                   CertID,
///   singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL } -- ignored unless critical
/// ```
///
/// Read requests with ``OCSPRequestParser``; build them (tests, agents) with ``init(certificateIDs:nonce:)``.
public struct OCSPRequest: Sendable, Hashable {
    /// id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
    public static let nonceOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 2]
    /// The media type of a POST body (RFC 6960 §A.1).
    public static let mediaType = "application/ocsp-request"

    public let certificateIDs: [OCSPCertificateID]
    /// The nonce's octets (the inner OCTET STRING of RFC 8954 §2.1), if the request carries one.
    public let nonce: [UInt8]?
    /// The nonce extension's extnValue exactly as received, echoed as is in the response.
    let nonceExtensionValue: [UInt8]?

    init(certificateIDs: [OCSPCertificateID], nonce: [UInt8]?, nonceExtensionValue: [UInt8]?) {
        self.certificateIDs = certificateIDs
        self.nonce = nonce
        self.nonceExtensionValue = nonceExtensionValue
    }

    /// A request for `certificateIDs`, with a nonce if one is given (RFC 8954: 1 to 32 octets, 32 recommended).
    public init(certificateIDs: [OCSPCertificateID], nonce: [UInt8]? = nil) {
        self.certificateIDs = certificateIDs
        self.nonce = nonce
        self.nonceExtensionValue = nonce.map { DERWriter.encode(DERWriter.octetString, $0) }
    }

    /// The request's DER: the body of a POST, or base64 and percent-encoded in a GET path.
    public var derBytes: [UInt8] {
        var requestList: [UInt8] = []
        for id in certificateIDs {
            requestList += DERWriter.encode(DERWriter.sequence, id.derBytes)
        }
        var tbs = DERWriter.encode(DERWriter.sequence, requestList)
        if let nonceExtensionValue {
            let ext = DERWriter.encode(
                DERWriter.sequence,
                DERWriter.objectIdentifier(Self.nonceOID) + DERWriter.encode(DERWriter.octetString, nonceExtensionValue)
            )
            tbs += DERWriter.encode(DERWriter.contextConstructed(2), DERWriter.encode(DERWriter.sequence, ext))
        }
        return DERWriter.encode(DERWriter.sequence, DERWriter.encode(DERWriter.sequence, tbs))
    }
}
