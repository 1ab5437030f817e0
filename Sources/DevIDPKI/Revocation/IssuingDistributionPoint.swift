import SwiftASN1

/// The Issuing Distribution Point of a partitioned CRL (RFC 5280 §5.2.5), restricted to what DevID writes: one
/// URI as the full name, and optionally `onlyContainsUserCerts`.
///
/// ```
/// IssuingDistributionPoint ::= SEQUENCE {
///   distributionPoint          [0] DistributionPointName OPTIONAL,  -- fullName [0] { uniformResourceIdentifier [6] }
///   onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE,
///   ... }
/// ```
struct IssuingDistributionPoint: Hashable, Sendable {
    var uri: String?
    var onlyContainsUserCertificates: Bool

    var derBytes: [UInt8] {
        var content: [UInt8] = []
        if let uri {
            let name = DistributionPointName.fullNameURI(uri)
            content += name
        }
        if onlyContainsUserCertificates {
            content += [DERWriter.contextPrimitive(1), 0x01, 0xFF]
        }
        var writer = DERWriter(capacity: content.count + 4)
        writer.node(DERWriter.sequence, content: content)
        return writer.bytes
    }

    /// Reads the fields DevID writes and ignores the rest (onlySomeReasons, indirectCRL, ...).
    init(derEncoded bytes: ArraySlice<UInt8>) throws {
        let root = try DER.parse(bytes)
        var uri: String?
        var onlyUser = false
        guard root.identifier == .sequence, case .constructed(let fields) = root.content else {
            throw DevIDPKIError(.malformed, "IssuingDistributionPoint is not a SEQUENCE")
        }
        for field in fields {
            if field.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                uri = DistributionPointName.firstURI(in: field)
            } else if field.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific) {
                onlyUser = try Bool(derEncoded: field, withIdentifier: field.identifier)
            }
        }
        self.uri = uri
        self.onlyContainsUserCertificates = onlyUser
    }

    init(uri: String?, onlyContainsUserCertificates: Bool) {
        self.uri = uri
        self.onlyContainsUserCertificates = onlyContainsUserCertificates
    }
}
