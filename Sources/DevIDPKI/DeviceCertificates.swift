public import DevIDCore
public import Foundation
public import X509

extension CertificateAuthority {
    /// Issues an LDevID: CN = device id, O = tenant, one SPIFFE URI SAN, clientAuth, backdated per profile.
    /// With `revocation`, it carries the CRL Distribution Point of its serial's CRL and the OCSP responder's AIA.
    public func issueLDevID(
        device: DeviceID, tenant: TenantID, trustDomain: String, publicKey: Certificate.PublicKey,
        profile: CertificateProfile = .ldevid, now: Date, revocation: RevocationEndpoints? = nil
    ) throws(DevIDPKIError) -> Certificate {
        let serial = SerialNumberGenerator.next(for: publicKey)
        return try issue(
            subject: try DeviceNames.ldevidSubject(device: device, tenant: tenant),
            publicKey: publicKey, profile: profile,
            subjectAlternativeNames: DeviceNames.ldevidAlternativeNames(
                trustDomain: trustDomain, tenant: tenant, device: device),
            now: now, serialNumber: serial, additionalExtensions: try revocation?.extensions(for: serial) ?? [])
    }

    /// Issues an IDevID: subject serialNumber = hardware serial, notAfter 99991231235959Z (802.1AR).
    public func issueIDevID(
        hardwareSerial: String, manufacturer: String = "DevID Manufacturer", publicKey: Certificate.PublicKey,
        profile: CertificateProfile = .idevid, now: Date, revocation: RevocationEndpoints? = nil
    ) throws(DevIDPKIError) -> Certificate {
        let serial = SerialNumberGenerator.next()
        return try issue(
            subject: try DeviceNames.idevidSubject(hardwareSerial: hardwareSerial, manufacturer: manufacturer),
            publicKey: publicKey, profile: profile, now: now, serialNumber: serial,
            additionalExtensions: try revocation?.extensions(for: serial) ?? [])
    }
}
