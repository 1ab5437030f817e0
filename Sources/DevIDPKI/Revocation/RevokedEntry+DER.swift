import DevIDCore
public import SwiftASN1
import X509

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension RevokedEntry: DERParseable {
    /// One `revokedCertificates` member; the reasonCode entry extension is read, other non-critical ones ignored.
    public init(derEncoded node: ASN1Node) throws {
        self = try DER.sequence(node, identifier: .sequence) { fields in
            let serial = try ArraySlice<UInt8>(derEncoded: &fields)
            guard let timeNode = fields.next() else { throw DevIDPKIError(.malformed, "CRL entry has no date") }
            let revokedAt = try Date(rfc5280Time: timeNode)
            var reason = RevocationReason.unspecified
            if let extensionsNode = fields.next() {
                let extensions = try DER.sequence(
                    of: Certificate.Extension.self, identifier: .sequence, rootNode: extensionsNode)
                for ext in extensions {
                    if ext.oid == CRLBuilder.reasonCodeOID {
                        let code = try Int(derEncoded: try DER.parse(ext.value), withIdentifier: .enumerated)
                        guard let known = RevocationReason(code: code) else {
                            throw DevIDPKIError(.malformed, "CRL entry has an unknown reason code")
                        }
                        reason = known
                    } else if ext.critical {
                        throw DevIDPKIError(.malformed, "CRL entry has an unknown critical extension")
                    }
                }
            }
            return RevokedEntry(serial: Certificate.SerialNumber(bytes: serial), revokedAt: revokedAt, reason: reason)
        }
    }
}
