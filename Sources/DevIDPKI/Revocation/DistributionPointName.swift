import SwiftASN1

/// `DistributionPointName ::= CHOICE { fullName [0] GeneralNames, ... }` holding one URI, as both the IDP of a CRL
/// and the CRL Distribution Points of a certificate write it.
enum DistributionPointName {
    /// `[0] { [0] { [6] uri } }`: the distributionPoint field with a fullName of one URI.
    static func fullNameURI(_ uri: String) -> [UInt8] {
        let uriBytes = Array(uri.utf8)
        let generalName = DERWriter.nodeLength(contentLength: uriBytes.count)
        let fullName = DERWriter.nodeLength(contentLength: generalName)
        var writer = DERWriter(capacity: DERWriter.nodeLength(contentLength: fullName))
        writer.header(DERWriter.contextConstructed(0), length: fullName)
        writer.header(DERWriter.contextConstructed(0), length: generalName)
        writer.node(DERWriter.contextPrimitive(6), content: uriBytes)
        return writer.bytes
    }

    /// The first URI of a `[0] DistributionPointName` node's fullName, if any.
    static func firstURI(in distributionPoint: ASN1Node) -> String? {
        guard case .constructed(let choices) = distributionPoint.content else { return nil }
        for choice in choices where choice.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            guard case .constructed(let names) = choice.content else { return nil }
            for name in names where name.identifier == ASN1Identifier(tagWithNumber: 6, tagClass: .contextSpecific) {
                if case .primitive(let bytes) = name.content { return String(decoding: bytes, as: UTF8.self) }
            }
        }
        return nil
    }
}
