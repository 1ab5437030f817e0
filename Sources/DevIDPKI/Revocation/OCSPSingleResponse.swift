import DevIDCore
public import SwiftASN1
import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

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
