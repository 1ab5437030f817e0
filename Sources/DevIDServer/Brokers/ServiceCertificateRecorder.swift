public import DevIDCore
public import DevIDPKI
public import DevIDStore
public import Foundation
public import X509

extension ServiceCertificate {
    /// The registry's record of a certificate of the services CA, issued now for `service`.
    public init(certificate: Certificate, service: String, names: [String], createdAt: Date) {
        self.init(
            serial: certificate.devidSerial, service: service, names: names,
            issuer: String(describing: certificate.issuer), notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter, publicKeySHA256: KeyMaterial.fingerprint(certificate.publicKey),
            certificateSHA256: certificate.sha256Fingerprint, der: certificate.derBytes, status: .active,
            createdAt: createdAt)
    }
}

/// Records each broker certificate in the registry, with its audit event, before its bytes go anywhere (a response,
/// a file): a broker certificate that could not be recorded is never handed out.
public struct ServiceCertificateRecorder: Sendable {
    let store: any Store
    let auditor: Auditor
    let clock: any WallClock

    public init(store: any Store, auditor: Auditor, clock: any WallClock) {
        self.store = store
        self.auditor = auditor
        self.clock = clock
    }

    /// Stores `certificate` (action `broker.certificate`, outcome success, its serial) in one transaction.
    public func record(_ certificate: Certificate, service: String, names: [String], actor: String) async throws {
        let record = ServiceCertificate(
            certificate: certificate, service: service, names: names, createdAt: clock.now())
        try await store.insertServiceCertificate(
            record,
            audit: auditor.event(
                actor: actor, action: "broker.certificate", outcome: .success,
                reason: "issued \(service) broker certificate \(record.serial) for \(names.joined(separator: ", ")) "
                    + "from the services CA",
                serial: record.serial))
    }
}
