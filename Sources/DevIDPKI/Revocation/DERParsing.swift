import DevIDCore
import SwiftASN1

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension ASN1ObjectIdentifier {
    /// Reads an AlgorithmIdentifier and returns its OID (parameters are not checked).
    init(algorithmIdentifier nodes: inout ASN1NodeCollection.Iterator) throws {
        guard let node = nodes.next() else { throw DevIDPKIError(.malformed, "AlgorithmIdentifier is missing") }
        self = try DER.sequence(node, identifier: .sequence) { fields in
            let oid = try ASN1ObjectIdentifier(derEncoded: &fields)
            _ = fields.next()  // parameters: absent or NULL for the algorithms DevID uses
            guard fields.next() == nil else { throw DevIDPKIError(.malformed, "AlgorithmIdentifier is too long") }
            return oid
        }
    }
}

extension Date {
    /// Reads an RFC 5280 `Time` (UTCTime or GeneralizedTime).
    init(rfc5280Time node: ASN1Node) throws {
        let components: DERTime.Components
        switch node.identifier {
        case .utcTime:
            let time = try UTCTime(derEncoded: node)
            components = DERTime.Components(
                year: time.year, month: time.month, day: time.day, hour: time.hours, minute: time.minutes,
                second: time.seconds)
        case .generalizedTime:
            let time = try GeneralizedTime(derEncoded: node)
            components = DERTime.Components(
                year: time.year, month: time.month, day: time.day, hour: time.hours, minute: time.minutes,
                second: time.seconds)
        default:
            throw DevIDPKIError(.malformed, "expected a UTCTime or GeneralizedTime")
        }
        guard let date = DERTime.date(components) else { throw DevIDPKIError(.malformed, "time out of range") }
        self = date
    }
}
