public import X509

/// Where a CA publishes revocation status: the CRL (or CRL partition) of each certificate and the OCSP responder,
/// all under one HTTP base URL (the operations listener, or whatever fronts it).
///
/// ```
/// <base>/crl/<ca>.crl              the complete CRL of CA <ca> (`issuing`, `manufacturer`)
/// <base>/crl/<ca>-<n>-<p>.crl      partition p (0-based) of n, when the CA's CRL is split in n partitions
/// <base>/ocsp                      the OCSP responder (POST, or GET /ocsp/<base64 request>)
/// ```
///
/// A partition's name carries the partition count, so raising the count gives every new certificate new URIs and
/// the old partitions can go on being published for the certificates that still name them.
public struct RevocationEndpoints: Sendable, Hashable {
    /// `http://host:port` (or with a path prefix), without a trailing slash.
    public let baseURL: String
    /// The CA's name in CRL file names.
    public let caName: String
    /// How many CRL partitions the CA's certificates are spread over; 1 means one complete CRL.
    public let partitionCount: Int

    public init(baseURL: String, caName: String, partitionCount: Int = 1) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.caName = caName
        self.partitionCount = max(1, partitionCount)
    }

    /// Whether `text` can be a base URL: `http://` or `https://`, printable ASCII, no query or fragment.
    public static func isValidBaseURL(_ text: String) -> Bool {
        (text.hasPrefix("http://") || text.hasPrefix("https://")) && text.utf8.count > "https://".utf8.count
            && text.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
    }

    /// The file name (without `.crl`) of partition `index`, or of the complete CRL for nil.
    public func crlName(partition index: Int?) -> String {
        guard let index else { return caName }
        return "\(caName)-\(partitionCount)-\(index)"
    }

    /// The URL a CRL name is published at.
    public func crlURL(name: String) -> String { "\(baseURL)/crl/\(name).crl" }

    /// The CRL a certificate with `serial` is listed in when revoked: its partition's, or the complete CRL.
    public func crlURL(for serial: Certificate.SerialNumber) -> String {
        guard partitionCount > 1 else { return crlURL(name: crlName(partition: nil)) }
        return crlURL(name: crlName(partition: CRLPartitioner.partition(for: serial, partitions: partitionCount)))
    }

    public var ocspURL: String { "\(baseURL)/ocsp" }

    /// CRL Distribution Points (this serial's CRL) and Authority Information Access (the OCSP responder), for a
    /// certificate about to be issued with `serial`.
    public func extensions(for serial: Certificate.SerialNumber) throws(DevIDPKIError) -> [Certificate.Extension] {
        [
            try RevocationExtensions.crlDistributionPoint(uri: crlURL(for: serial)),
            try RevocationExtensions.authorityInformationAccess(ocsp: ocspURL),
        ]
    }
}
