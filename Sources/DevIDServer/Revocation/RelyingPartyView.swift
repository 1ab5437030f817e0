import DevIDCore
import DevIDPKI
import Foundation
import X509

/// What a relying party learns about one certificate from DevID's published revocation status: the CRL its CRL
/// Distribution Point names (as served now) and the OCSP responder's answer (computed the way `/ocsp` computes it).
struct RelyingPartyView: Codable, Sendable {
    struct CRL: Codable, Sendable {
        var name: String
        var url: String
        var number: UInt64
        var thisUpdate: Date
        var nextUpdate: Date
        var listed: Bool
        var revokedAt: Date?
        var reason: RevocationReason?
    }

    struct OCSP: Codable, Sendable {
        var url: String
        /// `good`, `revoked` or `unknown`; or the OCSP error status (`tryLater`, ...).
        var status: String
        var revokedAt: Date?
        var reason: RevocationReason?
        var thisUpdate: Date?
        var nextUpdate: Date?
    }

    var crl: CRL?
    var ocsp: OCSP?
    /// Why a part is missing, e.g. "CRLs are not published yet".
    var notes: [String]
}

extension RevocationPublisher {
    /// The CRL and OCSP view of `certificate`, or notes saying why there is none (an external issuer, say).
    func relyingPartyView(of certificate: Certificate) async -> RelyingPartyView {
        var view = RelyingPartyView(crl: nil, ocsp: nil, notes: [])
        guard let authority = authorities.first(where: { $0.ca.certificate.subject == certificate.issuer }) else {
            view.notes.append("issued by a CA whose revocation status DevID does not publish")
            return view
        }
        let endpoints = await endpoints(caName: authority.name)
        // The CRL the certificate names; a certificate from before CRL Distribution Points uses the complete CRL.
        var name = endpoints.crlName(partition: nil)
        if let uri = RevocationExtensions.crlDistributionPointURI(of: certificate), uri.hasSuffix(".crl"),
            let last = uri.split(separator: "/").last
        {
            name = String(last.dropLast(4))
        }
        switch crl(named: name) {
        case .found(let published):
            let entry = published.crl.entry(for: certificate.serialNumber)
            view.crl = .init(
                name: published.name, url: published.url, number: published.number,
                thisUpdate: published.thisUpdate, nextUpdate: published.nextUpdate, listed: entry != nil,
                revokedAt: entry?.revokedAt, reason: entry?.reason)
        case .missing(_, let reason):
            view.notes.append(reason)
        }
        do {
            let id = try OCSPCertificateID(certificate: certificate, issuer: authority.ca.certificate)
            let request = OCSPRequest(certificateIDs: [id])
            let answer = await answer(request, der: request.derBytes)
            var ocsp = RelyingPartyView.OCSP(url: endpoints.ocspURL, status: "\(answer.response.status)")
            if let single = answer.response.basicResponse?.response(for: id) {
                ocsp.thisUpdate = single.thisUpdate
                ocsp.nextUpdate = single.nextUpdate
                switch single.status {
                case .good: ocsp.status = "good"
                case .unknown: ocsp.status = "unknown"
                case .revoked(let at, let reason):
                    ocsp.status = "revoked"
                    ocsp.revokedAt = at
                    ocsp.reason = reason
                }
            }
            view.ocsp = ocsp
        } catch {
            view.notes.append("the certificate's OCSP CertID could not be computed")
        }
        return view
    }
}
