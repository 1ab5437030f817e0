public import SwiftASN1
public import X509

/// The certificate extensions that tell a relying party where to check revocation: what the issuer adds to every
/// certificate so that its CRL partition and the OCSP responder can be found.
public enum RevocationExtensions {
    /// id-ce-cRLDistributionPoints (RFC 5280 §4.2.1.13).
    public static let crlDistributionPointsOID: ASN1ObjectIdentifier = [2, 5, 29, 31]

    /// CRL Distribution Points naming one URI, non-critical:
    /// `SEQUENCE { SEQUENCE { [0] { [0] { [6] uri } } } }`.
    ///
    /// For a partitioned CRL the URI must be byte-for-byte the Issuing Distribution Point of the partition that
    /// holds the certificate's serial (``CRLPartitioner/partition(for:partitions:)``): relying parties such as
    /// OpenSSL match the two before they use the CRL.
    public static func crlDistributionPoint(uri: String) throws(DevIDPKIError) -> Certificate.Extension {
        guard !uri.isEmpty, uri.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw DevIDPKIError(.policyViolation, "the CRL distribution point must be a URI in printable ASCII")
        }
        let distributionPoint = DERWriter.encode(DERWriter.sequence, DistributionPointName.fullNameURI(uri))
        return Certificate.Extension(
            oid: crlDistributionPointsOID, critical: false,
            value: DERWriter.encode(DERWriter.sequence, distributionPoint)[...])
    }

    /// Authority Information Access with the OCSP responder's URL and, optionally, where to fetch the issuing CA
    /// certificate (RFC 5280 §4.2.2.1), non-critical.
    public static func authorityInformationAccess(ocsp: String, caIssuers: String? = nil) throws(DevIDPKIError)
        -> Certificate.Extension
    {
        var descriptions = [
            AuthorityInformationAccess.AccessDescription(
                method: .ocspServer, location: .uniformResourceIdentifier(ocsp))
        ]
        if let caIssuers {
            descriptions.append(.init(method: .issuingCA, location: .uniformResourceIdentifier(caIssuers)))
        }
        do {
            return try Certificate.Extension(AuthorityInformationAccess(descriptions), critical: false)
        } catch {
            throw DevIDPKIError(.malformed, "the authority information access extension could not be encoded")
        }
    }

    /// Authority Information Access naming only where to fetch the issuer's certificate (caIssuers): what a CA
    /// certificate carries (its issuer, a root, runs no OCSP responder), non-critical.
    public static func authorityInformationAccess(caIssuers: String) throws(DevIDPKIError) -> Certificate.Extension {
        do {
            return try Certificate.Extension(
                AuthorityInformationAccess([
                    .init(method: .issuingCA, location: .uniformResourceIdentifier(caIssuers))
                ]), critical: false)
        } catch {
            throw DevIDPKIError(.malformed, "the authority information access extension could not be encoded")
        }
    }

    /// The revocation extensions of a CA certificate signed by root `rootName` (`root`, `root2`, ...): its CRL
    /// Distribution Point `<base>/crl/<rootName>.crl` and its Authority Information Access `<base>/ca/<rootName>.crt`.
    public static func caExtensions(baseURL: String, rootName: String) throws(DevIDPKIError) -> [Certificate.Extension] {
        let endpoints = RevocationEndpoints(baseURL: baseURL, caName: rootName)
        return [
            try crlDistributionPoint(uri: endpoints.crlURL(name: rootName)),
            try authorityInformationAccess(caIssuers: "\(endpoints.baseURL)/ca/\(rootName).crt"),
        ]
    }

    /// The first CRL Distribution Point URI of `certificate`, if it has one.
    public static func crlDistributionPointURI(of certificate: Certificate) -> String? {
        guard let ext = certificate.extensions[oid: crlDistributionPointsOID],
            let root = try? DER.parse(ext.value), case .constructed(let points) = root.content
        else { return nil }
        for point in points {
            guard case .constructed(let fields) = point.content else { continue }
            for field in fields where field.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                if let uri = DistributionPointName.firstURI(in: field) { return uri }
            }
        }
        return nil
    }
}
