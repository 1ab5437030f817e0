import DevIDCore
import SwiftASN1
public import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A signed X.509 v2 CRL: its DER and the fields DevID writes.
///
/// Made by ``CRLBuilder``, or read back with ``init(derEncoded:)`` — strict DER, the fields DevID writes, and unknown
/// non-critical extensions ignored. Reading is for tests, `devid cert status` and agents; it is not a general
/// relying-party CRL validator (no delta CRLs, no indirect CRLs).
public struct CertificateRevocationList: Sendable, Hashable {
    /// The complete `CertificateList` DER: the body of `GET /crl/<name>.crl` (`application/pkix-crl`).
    public let derBytes: [UInt8]
    public let issuer: DistinguishedName
    /// Whole seconds, as encoded.
    public let thisUpdate: Date
    public let nextUpdate: Date?
    public let crlNumber: UInt64?
    public let authorityKeyIdentifier: [UInt8]?
    /// The Issuing Distribution Point's URI: set for one partition of a partitioned CRL.
    public let distributionPoint: String?
    public let onlyContainsUserCertificates: Bool
    /// The entries, in CRL order. From ``CRLBuilder`` these are the entries as given (dates not truncated).
    public let entries: [RevokedEntry]

    /// The DER bytes the signature covers, and the signature; kept for ``isSignatureValid(issuer:)``.
    private let signedPart: SignedPart?

    struct SignedPart: Sendable, Hashable {
        var tbs: Range<Int>
        var algorithm: ASN1ObjectIdentifier
        var signature: [UInt8]
    }

    init(
        derBytes: [UInt8], issuer: DistinguishedName, thisUpdate: Date, nextUpdate: Date?, crlNumber: UInt64?,
        authorityKeyIdentifier: [UInt8]?, distributionPoint: String?, onlyContainsUserCertificates: Bool,
        entries: [RevokedEntry], signedPart: SignedPart? = nil
    ) {
        self.derBytes = derBytes
        self.issuer = issuer
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
        self.crlNumber = crlNumber
        self.authorityKeyIdentifier = authorityKeyIdentifier
        self.distributionPoint = distributionPoint
        self.onlyContainsUserCertificates = onlyContainsUserCertificates
        self.entries = entries
        self.signedPart = signedPart
    }

    /// Two CRLs are equal when their encodings are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.derBytes == rhs.derBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(derBytes) }

    /// The PEM form (`-----BEGIN X509 CRL-----`), as `openssl crl -outform PEM` writes it.
    public var pemString: String {
        PEMDocument(type: "X509 CRL", derBytes: derBytes).pemString
    }

    /// The entry for `serial`, if the CRL lists it (a linear scan; index the entries for repeated lookups).
    public func entry(for serial: Certificate.SerialNumber) -> RevokedEntry? {
        entries.first { $0.serial == serial }
    }

    /// Whether `issuer`'s public key signed this CRL and `issuer` is the CRL's issuer.
    public func isSignatureValid(issuer certificate: Certificate) -> Bool {
        guard certificate.subject == issuer else { return false }
        let part: SignedPart
        if let signedPart {
            part = signedPart
        } else if let reread = try? CertificateRevocationList(derEncoded: derBytes), let signedPart = reread.signedPart
        {
            part = signedPart
        } else {
            return false
        }
        guard let algorithm = SignatureAlgorithms.algorithm(part.algorithm) else { return false }
        return certificate.publicKey.isValidSignature(
            part.signature, for: derBytes[part.tbs], signatureAlgorithm: algorithm)
    }

    /// Reads a DER CRL. Throws ``DevIDPKIError`` `.malformed` for anything else, and for a critical extension DevID
    /// does not understand.
    public init(derEncoded bytes: [UInt8]) throws(DevIDPKIError) {
        do {
            self = try Self.parse(bytes)
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "not a DER X.509 CRL")
        }
    }

    private static func parse(_ bytes: [UInt8]) throws -> CertificateRevocationList {
        let root = try DER.parse(bytes)
        return try DER.sequence(root, identifier: .sequence) { nodes in
            guard let tbsNode = nodes.next(), tbsNode.identifier == .sequence else {
                throw DevIDPKIError(.malformed, "CRL has no TBSCertList")
            }
            let algorithm = try ASN1ObjectIdentifier(algorithmIdentifier: &nodes)
            let signature = try ASN1BitString(derEncoded: &nodes)
            guard nodes.next() == nil else { throw DevIDPKIError(.malformed, "CRL has trailing fields") }
            let tbsRange = tbsNode.encodedBytes.startIndex..<tbsNode.encodedBytes.endIndex

            return try DER.sequence(tbsNode, identifier: .sequence) { fields in
                let version = try Int(derEncoded: &fields)
                guard version == 1 else { throw DevIDPKIError(.malformed, "CRL is not version 2") }
                let innerAlgorithm = try ASN1ObjectIdentifier(algorithmIdentifier: &fields)
                guard innerAlgorithm == algorithm else {
                    throw DevIDPKIError(.malformed, "CRL signature algorithms disagree")
                }
                guard let issuerNode = fields.next() else { throw DevIDPKIError(.malformed, "CRL has no issuer") }
                let issuer = try DistinguishedName(derEncoded: issuerNode)
                guard let thisUpdateNode = fields.next() else {
                    throw DevIDPKIError(.malformed, "CRL has no thisUpdate")
                }
                let thisUpdate = try Date(rfc5280Time: thisUpdateNode)
                var next = fields.next()
                var nextUpdate: Date?
                if let node = next, node.identifier == .utcTime || node.identifier == .generalizedTime {
                    nextUpdate = try Date(rfc5280Time: node)
                    next = fields.next()
                }
                var entries: [RevokedEntry] = []
                if let node = next, node.identifier == .sequence {
                    entries = try DER.sequence(of: RevokedEntry.self, identifier: .sequence, rootNode: node)
                    next = fields.next()
                }
                var crlNumber: UInt64?
                var aki: [UInt8]?
                var idp: IssuingDistributionPoint?
                if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                    let extensions = try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) {
                        try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: $0)
                    }
                    for ext in extensions {
                        switch ext.oid {
                        case CRLBuilder.crlNumberOID:
                            let value = try ArraySlice<UInt8>(derEncoded: ext.value)
                            guard value.count <= 8 else { throw DevIDPKIError(.malformed, "CRL number over 64 bits") }
                            crlNumber = value.reduce(0) { $0 << 8 | UInt64($1) }
                        case CRLBuilder.issuingDistributionPointOID:
                            idp = try IssuingDistributionPoint(derEncoded: ext.value)
                        case .X509ExtensionID.authorityKeyIdentifier:
                            aki = (try AuthorityKeyIdentifier(ext).keyIdentifier).map(Array.init)
                        default:
                            guard !ext.critical else {
                                throw DevIDPKIError(.malformed, "CRL has an unknown critical extension \(ext.oid)")
                            }
                        }
                    }
                    next = fields.next()
                }
                guard next == nil else { throw DevIDPKIError(.malformed, "TBSCertList has unexpected fields") }
                return CertificateRevocationList(
                    derBytes: bytes, issuer: issuer, thisUpdate: thisUpdate, nextUpdate: nextUpdate,
                    crlNumber: crlNumber, authorityKeyIdentifier: aki, distributionPoint: idp?.uri,
                    onlyContainsUserCertificates: idp?.onlyContainsUserCertificates ?? false, entries: entries,
                    signedPart: SignedPart(tbs: tbsRange, algorithm: algorithm, signature: Array(signature.bytes)))
            }
        }
    }
}
