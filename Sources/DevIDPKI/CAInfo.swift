import DevIDCore
public import Foundation
public import X509

/// A printable summary of one CA-hierarchy certificate (what `devid ca show` prints).
public struct CertificateSummary: Codable, Sendable, Hashable {
    public var role: String
    public var subject: String
    public var issuer: String
    public var keyType: String
    public var serial: String
    public var notBefore: Date
    public var notAfter: Date
    public var sha256: String
    public var isCA: Bool

    public init(role: String, certificate: Certificate) {
        self.role = role
        self.subject = String(describing: certificate.subject)
        self.issuer = String(describing: certificate.issuer)
        self.keyType = KeyAlgorithmName.describe(certificate.publicKey)
        self.serial = certificate.devidSerial.rawValue
        self.notBefore = certificate.notValidBefore
        self.notAfter = certificate.notValidAfter
        self.sha256 = certificate.sha256Fingerprint
        self.isCA = certificate.isCertificateAuthority
    }
}

enum KeyAlgorithmName {
    static func describe(_ key: Certificate.PublicKey) -> String {
        switch KeyAlgorithm(key) {
        case .p256: "ECDSA P-256"
        case .p384: "ECDSA P-384"
        case .ed25519: "Ed25519"
        case .rsa2048: "RSA 2048"
        case .rsa3072: "RSA 3072"
        case .rsa4096: "RSA 4096"
        case nil: "unknown"
        }
    }
}

/// The whole hierarchy as `devid ca show` and `GET /v1/admin/ca` present it.
public struct HierarchySummary: Codable, Sendable, Hashable {
    public var trustDomain: String
    public var certificates: [CertificateSummary]

    public init(trustDomain: String, certificates: [CertificateSummary]) {
        self.trustDomain = trustDomain
        self.certificates = certificates
    }

    /// Reads the public half of the hierarchy from the data directory; needs no passphrase.
    public static func read(layout: CALayout) throws(DevIDPKIError) -> HierarchySummary {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let metadata = try? decoder.decode(CAMetadata.self, from: Data(SecureFile.read(layout.metadata))) else {
            throw DevIDPKIError(.malformed, "\(layout.metadata) is not valid CA metadata")
        }
        var entries: [CertificateSummary] = []
        entries.append(CertificateSummary(role: "root", certificate: try CAStore.readCertificate(layout.rootCertificate)))
        entries.append(
            CertificateSummary(role: "issuing", certificate: try CAStore.readCertificate(layout.issuingCertificate)))
        if FileManager.default.fileExists(atPath: layout.servicesCertificate) {
            entries.append(
                CertificateSummary(role: "services", certificate: try CAStore.readCertificate(layout.servicesCertificate)))
        }
        var ownManufacturer: String?
        if FileManager.default.fileExists(atPath: layout.manufacturerCertificate) {
            let cert = try CAStore.readCertificate(layout.manufacturerCertificate)
            ownManufacturer = cert.sha256Fingerprint
            entries.append(CertificateSummary(role: "manufacturer", certificate: cert))
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.trustedManufacturers)) ?? []
        for file in files.sorted() where file.hasSuffix(".pem") {
            let text = String(decoding: try SecureFile.read(layout.trustedManufacturers + "/" + file), as: UTF8.self)
            for cert in try PEM.certificates(text) where cert.sha256Fingerprint != ownManufacturer {
                entries.append(CertificateSummary(role: "trusted-manufacturer", certificate: cert))
            }
        }
        entries.append(
            CertificateSummary(role: "server-tls", certificate: try CAStore.readCertificate(layout.serverCertificate)))
        return HierarchySummary(trustDomain: metadata.trustDomain, certificates: entries)
    }
}

extension HierarchySummary {
    /// The summary of a loaded hierarchy.
    public init(hierarchy: CAHierarchy) {
        var entries = [
            CertificateSummary(role: "root", certificate: hierarchy.root),
            CertificateSummary(role: "issuing", certificate: hierarchy.issuing.certificate),
        ]
        if let services = hierarchy.services {
            entries.append(CertificateSummary(role: "services", certificate: services.certificate))
        }
        if let manufacturer = hierarchy.manufacturer {
            entries.append(CertificateSummary(role: "manufacturer", certificate: manufacturer.certificate))
        }
        for cert in hierarchy.trustedManufacturers where cert != hierarchy.manufacturer?.certificate {
            entries.append(CertificateSummary(role: "trusted-manufacturer", certificate: cert))
        }
        if let server = hierarchy.serverChain.first {
            entries.append(CertificateSummary(role: "server-tls", certificate: server))
        }
        self.init(trustDomain: hierarchy.trustDomain, certificates: entries)
    }
}
