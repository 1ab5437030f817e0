import DevIDCore
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// Builds DER X.509 v2 CRLs (RFC 5280 §5) signed by a ``CertificateAuthority``.
///
/// ```
/// CertificateList ::= SEQUENCE {
///   tbsCertList          TBSCertList,
///   signatureAlgorithm   AlgorithmIdentifier,
///   signatureValue       BIT STRING }
///
/// TBSCertList ::= SEQUENCE {
///   version              INTEGER v2(1),
///   signature            AlgorithmIdentifier,
///   issuer               Name,                    -- the CA certificate's subject, byte for byte
///   thisUpdate           Time,
///   nextUpdate           Time,
///   revokedCertificates  SEQUENCE OF SEQUENCE {
///       userCertificate      CertificateSerialNumber,
///       revocationDate       Time,
///       crlEntryExtensions   Extensions OPTIONAL } -- reasonCode, unless unspecified
///     OPTIONAL,                                    -- absent when nothing is revoked
///   crlExtensions        [0] EXPLICIT Extensions } -- AKI, cRLNumber, IDP (critical) when partitioned
/// ```
///
/// The revoked list is written in one pass into a buffer sized up front (no per-entry allocation, no length
/// fix-ups), so a million entries cost about one buffer copy and one signature over the TBS. Entries are written in
/// the order given; the caller drops certificates that have expired (RFC 5280 §3.3 lets a CRL omit them) and passes
/// each serial once.
public struct CRLBuilder: Sendable {
    /// The CA whose certificates the CRL covers, and whose key signs it.
    public let authority: CertificateAuthority

    private let signer: CASigner
    private let issuerNameDER: [UInt8]
    private let authorityKeyIdentifier: [UInt8]

    public init(authority: CertificateAuthority) throws(DevIDPKIError) {
        guard authority.certificate.isCertificateAuthority else {
            throw DevIDPKIError(.policyViolation, "only a CA certificate can issue a CRL")
        }
        guard let ski = authority.certificate.subjectKeyIdentifierBytes else {
            throw DevIDPKIError(.policyViolation, "the CA certificate has no subject key identifier for the CRL's AKI")
        }
        self.authority = authority
        self.signer = try CASigner(authority.signingKey)
        self.issuerNameDER = try CertificateFields.subjectDER(of: authority.certificate)
        self.authorityKeyIdentifier = Array(ski)
    }

    /// One signed CRL.
    ///
    /// - Parameters:
    ///   - entries: The revoked, unexpired certificates this CRL covers (for a partition: only that partition's).
    ///   - thisUpdate: When the CRL is issued.
    ///   - nextUpdate: When the next CRL is due at the latest; must be after `thisUpdate`.
    ///   - crlNumber: Monotonically increasing per CA and per partition scope (RFC 5280 §5.2.3).
    ///   - distributionPoint: The URI this CRL is published at when it is one partition of several; written as a
    ///     critical Issuing Distribution Point with `onlyContainsUserCerts`, and it must match the CRL Distribution
    ///     Point in the certificates the partition covers. Nil for a complete CRL.
    public func build(
        entries: [RevokedEntry],
        thisUpdate: Date,
        nextUpdate: Date,
        crlNumber: UInt64,
        distributionPoint: String? = nil
    ) throws(DevIDPKIError) -> CertificateRevocationList {
        guard DERTime.truncated(nextUpdate) > DERTime.truncated(thisUpdate) else {
            throw DevIDPKIError(.policyViolation, "a CRL's nextUpdate must be after its thisUpdate")
        }
        if let distributionPoint {
            guard !distributionPoint.isEmpty, distributionPoint.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw DevIDPKIError(.policyViolation, "the distribution point must be a URI in printable ASCII")
            }
        }
        let crlExtensions = try extensionsDER(crlNumber: crlNumber, distributionPoint: distributionPoint)

        // Pass 1: sizes only.
        var revokedContentLength = 0
        for entry in entries {
            guard entry.reason != .removeFromCRL else {
                throw DevIDPKIError(.policyViolation, "removeFromCRL is only used in delta CRLs (RFC 5280 §5.3.1)")
            }
            revokedContentLength += Self.entryNodeLength(entry)
        }
        let thisUpdateTime = DERTime.components(thisUpdate)
        let nextUpdateTime = DERTime.components(nextUpdate)
        let version: [UInt8] = [DERWriter.integer, 1, 1]  // v2
        var tbsContentLength =
            version.count + signer.algorithmIdentifierDER.count + issuerNameDER.count
            + DERTime.rfc5280TimeNodeLength(thisUpdateTime) + DERTime.rfc5280TimeNodeLength(nextUpdateTime)
            + crlExtensions.count
        if !entries.isEmpty {
            tbsContentLength += DERWriter.nodeLength(contentLength: revokedContentLength)
        }

        // Pass 2: write the TBS.
        var writer = DERWriter(capacity: DERWriter.nodeLength(contentLength: tbsContentLength))
        writer.header(DERWriter.sequence, length: tbsContentLength)
        writer.append(contentsOf: version)
        writer.append(contentsOf: signer.algorithmIdentifierDER)
        writer.append(contentsOf: issuerNameDER)
        writer.rfc5280Time(thisUpdateTime)
        writer.rfc5280Time(nextUpdateTime)
        if !entries.isEmpty {
            writer.header(DERWriter.sequence, length: revokedContentLength)
            for entry in entries {
                Self.writeEntry(entry, into: &writer)
            }
        }
        writer.append(contentsOf: crlExtensions)
        let tbs = writer.bytes

        let signed = try signer.signedEnvelope(tbs: tbs)
        return CertificateRevocationList(
            derBytes: signed.der, issuer: authority.certificate.subject, thisUpdate: DERTime.truncated(thisUpdate),
            nextUpdate: DERTime.truncated(nextUpdate), crlNumber: crlNumber,
            authorityKeyIdentifier: authorityKeyIdentifier, distributionPoint: distributionPoint,
            onlyContainsUserCertificates: distributionPoint != nil, entries: entries,
            signedPart: .init(tbs: signed.tbsRange, algorithm: signer.algorithmOID, signature: signed.signature))
    }

    /// One CRL per partition of `partitioner`, each at `distributionPoint(index)`, all with the same times and
    /// number. Throws `.policyViolation` if a partition comes out larger than `maximumBytes`: the partition count
    /// is then too small for the number of revocations and must be raised (see ``CRLPartitioner``).
    public func buildPartitions(
        entries: [RevokedEntry],
        partitioner: CRLPartitioner,
        thisUpdate: Date,
        nextUpdate: Date,
        crlNumber: UInt64,
        maximumBytes: Int = CRLPartitioner.defaultMaximumBytes,
        distributionPoint: (Int) -> String
    ) throws(DevIDPKIError) -> [CertificateRevocationList] {
        var crls: [CertificateRevocationList] = []
        crls.reserveCapacity(partitioner.partitionCount)
        for (index, partition) in partitioner.split(entries).enumerated() {
            let crl = try build(
                entries: partition, thisUpdate: thisUpdate, nextUpdate: nextUpdate, crlNumber: crlNumber,
                distributionPoint: distributionPoint(index))
            guard crl.derBytes.count <= maximumBytes else {
                throw DevIDPKIError(
                    .policyViolation,
                    "CRL partition \(index) of \(partitioner.partitionCount) is \(crl.derBytes.count) bytes, over the "
                        + "\(maximumBytes)-byte limit: raise the partition count")
            }
            crls.append(crl)
        }
        return crls
    }

    // MARK: - Encoding

    /// id-ce-cRLReasons (RFC 5280 §5.3.1).
    static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]
    /// id-ce-cRLNumber (RFC 5280 §5.2.3).
    static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]
    /// id-ce-issuingDistributionPoint (RFC 5280 §5.2.5).
    static let issuingDistributionPointOID: ASN1ObjectIdentifier = [2, 5, 29, 28]

    /// `Extensions` holding one non-critical reasonCode, minus the last byte (the ENUMERATED value):
    /// `SEQUENCE { SEQUENCE { OID 2.5.29.21, OCTET STRING { ENUMERATED code } } }`.
    private static let reasonCodeExtensionPrefix: [UInt8] = [
        0x30, 0x0C, 0x30, 0x0A, 0x06, 0x03, 0x55, 0x1D, 0x15, 0x04, 0x03, 0x0A, 0x01,
    ]

    /// RFC 5280 writes dates from 1950 through 2049 as UTCTime, others as GeneralizedTime.
    private static let utcTimeRange: Range<TimeInterval> = -631_152_000..<2_524_608_000

    /// The length of an entry's whole node.
    @inline(__always)
    static func entryNodeLength(_ entry: RevokedEntry) -> Int {
        let serial = entry.serial.bytes
        let serialContent = serial.isEmpty || serial[serial.startIndex] & 0x80 != 0 ? serial.count + 1 : serial.count
        let time = utcTimeRange.contains(entry.revokedAt.timeIntervalSince1970.rounded(.down)) ? 15 : 17
        let extensions = entry.reason == .unspecified ? 0 : reasonCodeExtensionPrefix.count + 1
        return DERWriter.nodeLength(
            contentLength: DERWriter.nodeLength(contentLength: serialContent) + time + extensions)
    }

    @inline(__always)
    private static func writeEntry(_ entry: RevokedEntry, into writer: inout DERWriter) {
        let serial = entry.serial.bytes
        let needsZero = serial.isEmpty || serial[serial.startIndex] & 0x80 != 0
        let serialContent = needsZero ? serial.count + 1 : serial.count
        let time = DERTime.components(entry.revokedAt)
        let extensions = entry.reason == .unspecified ? 0 : reasonCodeExtensionPrefix.count + 1
        let content =
            DERWriter.nodeLength(contentLength: serialContent) + DERTime.rfc5280TimeNodeLength(time) + extensions
        writer.header(DERWriter.sequence, length: content)
        writer.header(DERWriter.integer, length: serialContent)
        if needsZero { writer.append(0) }
        writer.append(contentsOf: serial)
        writer.rfc5280Time(time)
        if extensions > 0 {
            writer.append(contentsOf: reasonCodeExtensionPrefix)
            writer.append(UInt8(entry.reason.code))
        }
    }

    /// `[0] EXPLICIT Extensions`: AKI, cRLNumber and, for a partition, the critical IDP.
    private func extensionsDER(crlNumber: UInt64, distributionPoint: String?) throws(DevIDPKIError) -> [UInt8] {
        do {
            var extensions = [
                try Certificate.Extension(
                    AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier[...]), critical: false),
                Certificate.Extension(
                    oid: Self.crlNumberOID, critical: false,
                    value: Self.integerNode(DERInteger.positiveContent(crlNumber))[...]),
            ]
            if let distributionPoint {
                extensions.append(
                    Certificate.Extension(
                        oid: Self.issuingDistributionPointOID, critical: true,
                        value: IssuingDistributionPoint(uri: distributionPoint, onlyContainsUserCertificates: true)
                            .derBytes[...]))
            }
            var serializer = DER.Serializer()
            try serializer.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.serializeSequenceOf(extensions)
            }
            return serializer.serializedBytes
        } catch {
            throw DevIDPKIError(.malformed, "CRL extensions could not be encoded")
        }
    }

    private static func integerNode(_ content: [UInt8]) -> [UInt8] {
        var writer = DERWriter(capacity: content.count + 2)
        writer.node(DERWriter.integer, content: content)
        return writer.bytes
    }
}
