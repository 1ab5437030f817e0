import DevIDCore
import DevIDPKCS11
public import Foundation
import SwiftASN1
public import X509

/// A CA that can sign: its certificate and its signing key.
///
/// The key is a `Certificate.PrivateKey`, which wraps either an in-memory swift-crypto key or any
/// `CustomPrivateKey` — the signing protocol a PKCS#11 HSM implements to replace the encrypted file.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    public let signingKey: Certificate.PrivateKey

    public init(certificate: Certificate, signingKey: Certificate.PrivateKey) throws(DevIDPKIError) {
        guard signingKey.publicKey == certificate.publicKey else {
            throw DevIDPKIError(.policyViolation, "the CA key does not match the CA certificate")
        }
        self.certificate = certificate
        self.signingKey = signingKey
    }

    /// A new self-signed root (or a self-signed manufacturer trust anchor).
    public static func makeRoot(
        subject: DistinguishedName, key: Certificate.PrivateKey, profile: CertificateProfile, now: Date,
        additionalExtensions: [Certificate.Extension] = []
    ) throws(DevIDPKIError) -> CertificateAuthority {
        let certificate = try CertificateIssuer.sign(
            subject: subject, subjectKey: key.publicKey, issuerName: subject, issuerKey: key,
            issuerKeyIdentifier: nil, profile: profile, subjectAlternativeNames: [], now: now,
            additionalExtensions: additionalExtensions)
        return try CertificateAuthority(certificate: certificate, signingKey: key)
    }

    /// Signs a certificate for `publicKey` under `profile`, issued by this CA.
    public func issue(
        subject: DistinguishedName,
        publicKey: Certificate.PublicKey,
        profile: CertificateProfile,
        subjectAlternativeNames: [GeneralName] = [],
        now: Date,
        serialNumber: Certificate.SerialNumber = SerialNumberGenerator.next(),
        additionalExtensions: [Certificate.Extension] = []
    ) throws(DevIDPKIError) -> Certificate {
        try CertificateIssuer.sign(
            subject: subject, subjectKey: publicKey, issuerName: certificate.subject, issuerKey: signingKey,
            issuerKeyIdentifier: certificate.subjectKeyIdentifierBytes, profile: profile,
            subjectAlternativeNames: subjectAlternativeNames, now: now, serialNumber: serialNumber,
            notAfterLimit: certificate.notValidAfter, additionalExtensions: additionalExtensions)
    }
}

/// Builds RFC 5280-conformant certificates from a profile.
public enum CertificateIssuer {
    /// 802.1AR's "no well-defined expiration": 9999-12-31T23:59:59Z.
    public static let noExpiry = Date(timeIntervalSince1970: 253_402_300_799)

    static func sign(
        subject: DistinguishedName,
        subjectKey: Certificate.PublicKey,
        issuerName: DistinguishedName,
        issuerKey: Certificate.PrivateKey,
        issuerKeyIdentifier: ArraySlice<UInt8>?,
        profile: CertificateProfile,
        subjectAlternativeNames: [GeneralName],
        now: Date,
        serialNumber: Certificate.SerialNumber = SerialNumberGenerator.next(),
        notAfterLimit: Date? = nil,
        additionalExtensions: [Certificate.Extension] = []
    ) throws(DevIDPKIError) -> Certificate {
        guard let algorithm = KeyAlgorithm(subjectKey), profile.policy.allowedKeyAlgorithms.contains(algorithm) else {
            throw DevIDPKIError(
                .unsupportedAlgorithm,
                "key algorithm is not allowed by profile \(profile.policy.name) (allowed: "
                    + profile.policy.allowedKeyAlgorithms.map(\.rawValue).sorted().joined(separator: ", ") + ")")
        }
        let notBefore = now.addingTimeInterval(-profile.policy.backdate)
        var notAfter = profile.policy.lifetime.map { now.addingTimeInterval($0) } ?? noExpiry
        // A certificate never outlives its issuer (except 802.1AR's "no expiry" IDevIDs).
        if let limit = notAfterLimit, notAfter > limit, profile.policy.lifetime != nil {
            notAfter = limit
        }
        let skiBytes = SubjectKeyIdentifier(hash: subjectKey).keyIdentifier
        do {
            var extensions = Certificate.Extensions()
            switch profile.kind {
            case .rootCA(let pathLength), .intermediateCA(let pathLength):
                try extensions.append(
                    Certificate.Extension(
                        BasicConstraints.isCertificateAuthority(maxPathLength: pathLength), critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(keyCertSign: true, cRLSign: true), critical: true))
            case .servicesCA(let pathLength):
                try extensions.append(
                    Certificate.Extension(
                        BasicConstraints.isCertificateAuthority(maxPathLength: pathLength), critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(keyCertSign: true, cRLSign: true), critical: true))
                // An EKU in a CA certificate bounds the usages of everything under it (OpenSSL and the DevID agent
                // check it): no id-kp-cmcRA, so no certificate of this CA can be the EST server.
                try extensions.append(
                    Certificate.Extension(try ExtendedKeyUsage([.serverAuth, .clientAuth]), critical: false))
            case .idevid, .ldevid:
                try extensions.append(Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
                try extensions.append(
                    Certificate.Extension(try ExtendedKeyUsage([.clientAuth]), critical: false))
            case .serverTLS:
                try extensions.append(Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
                try extensions.append(
                    Certificate.Extension(try ExtendedKeyUsage([.serverAuth, .estServer]), critical: false))
            case .serviceTLS:
                try extensions.append(Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
                try extensions.append(
                    Certificate.Extension(try ExtendedKeyUsage([.serverAuth]), critical: false))
            case .ocspSigning:
                try extensions.append(Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true))
                try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
                try extensions.append(
                    Certificate.Extension(try ExtendedKeyUsage([.ocspSigning]), critical: false))
                // id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying parties do not check the responder's own
                // revocation status, which is why the certificate is short-lived. The value is NULL.
                try extensions.append(
                    Certificate.Extension(oid: [1, 3, 6, 1, 5, 5, 7, 48, 1, 5], critical: false, value: [0x05, 0x00]))
            }
            try extensions.append(Certificate.Extension(SubjectKeyIdentifier(keyIdentifier: skiBytes), critical: false))
            // Self-signed anchors name their own key; everything else names its issuer's (RFC 5280 §4.2.1.1).
            guard let akiBytes = issuerKeyIdentifier ?? (issuerName == subject ? skiBytes : nil) else {
                throw DevIDPKIError(.policyViolation, "issuer has no subject key identifier")
            }
            try extensions.append(
                Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: akiBytes), critical: false))
            if !subjectAlternativeNames.isEmpty {
                // RFC 5280 §4.2.1.6: critical when the subject is empty.
                try extensions.append(
                    Certificate.Extension(
                        SubjectAlternativeNames(subjectAlternativeNames), critical: subject.isEmpty))
            }
            // Where relying parties check revocation (CRL Distribution Points, AIA), for end-entity profiles.
            for extra in additionalExtensions {
                try extensions.append(extra)
            }
            return try Certificate(
                version: .v3,
                serialNumber: serialNumber,
                publicKey: subjectKey,
                notValidBefore: notBefore,
                notValidAfter: notAfter,
                issuer: issuerName,
                subject: subject,
                extensions: extensions,
                issuerPrivateKey: issuerKey)
        } catch let error as DevIDPKIError {
            throw error
        } catch let error as PKCS11Error {
            throw DevIDPKIError(error)
        } catch {
            throw DevIDPKIError(.malformed, "certificate could not be built: \(error)")
        }
    }
}

extension ExtendedKeyUsage.Usage {
    /// id-kp-cmcRA (1.3.6.1.5.5.7.3.28): RFC 7030 §3.6.1's mark of an EST server's certificate. DevID puts it in its
    /// own listener certificate only; the agent accepts no EST server certificate without it.
    public static let estServer = ExtendedKeyUsage.Usage(oid: [1, 3, 6, 1, 5, 5, 7, 3, 28])
}

extension Certificate {
    /// True when the extended key usage names id-kp-cmcRA: DevID's own listener certificate (RFC 7030 §3.6.1).
    public var isESTServerCertificate: Bool {
        ((try? extensions.extendedKeyUsage) ?? nil)?.contains(.estServer) ?? false
    }

    /// True for a CA certificate whose extended key usage leaves out id-kp-cmcRA, such as DevID's services CA: no
    /// certificate under it may be an EST server's.
    public var isServicesCA: Bool {
        guard isCertificateAuthority, let usage = (try? extensions.extendedKeyUsage) ?? nil else { return false }
        return !usage.contains(.estServer)
    }

    /// The SubjectKeyIdentifier extension's bytes, or nil.
    public var subjectKeyIdentifierBytes: ArraySlice<UInt8>? {
        (try? extensions.subjectKeyIdentifier)??.keyIdentifier
    }
}
