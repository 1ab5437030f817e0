import DevIDPKI
import Foundation

/// One CRL as the operations listener serves it at `/crl/<name>.crl`.
struct PublishedCRL: Sendable {
    /// The file name without `.crl`: `issuing`, `manufacturer`, or a partition such as `issuing-4-1`.
    let name: String
    /// The CA the CRL belongs to (`issuing`, `manufacturer`).
    let caName: String
    let crl: CertificateRevocationList
    /// Where the CRL is published (the URL its certificates' CRL Distribution Point names).
    let url: String

    var der: [UInt8] { crl.derBytes }
    var number: UInt64 { crl.crlNumber ?? 0 }
    var thisUpdate: Date { crl.thisUpdate }
    var nextUpdate: Date { crl.nextUpdate ?? crl.thisUpdate }
    /// A strong validator: the CRL number changes with every re-signing.
    var entityTag: String { "\"\(name)-\(number)\"" }
}

/// What `GET /crl/<name>.crl` finds.
enum CRLLookup: Sendable {
    case found(PublishedCRL)
    /// Not published (yet, or at all); the reason is one line for the 404/503 body.
    case missing(status: Int, reason: String)
}
