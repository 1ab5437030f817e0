import DevIDCore
import DevIDPKCS11
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
    /// The `pkcs11:` URI of the CA's key when it lives in a token (`devid ca init --key-uri`, `devid ca
    /// import-key`); absent for a key in an encrypted file.
    public var keyURI: String?

    public init(role: String, certificate: Certificate, keyURI: String? = nil) {
        self.keyURI = keyURI
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
        let metadata = try CAMetadata.read(layout)
        var entries: [CertificateSummary] = []
        func token(_ keyPath: String) -> String? { (try? CAKeys.uri(keyPath))?.description }
        let rootURI = metadata.rootKeyLocation.flatMap { PKCS11URI.isURI($0) ? $0 : nil } ?? token(layout.rootKey)
        entries.append(
            CertificateSummary(role: "root", certificate: try CAStore.readCertificate(layout.rootCertificate), keyURI: rootURI))
        // After a root rollover: the later roots and the cross-certificates between them (break-glass runbook).
        let roots = try CAStore.loadRoots(layout: layout)
        for id in roots.ids where id > 1 {
            if let root = roots.certificates[id] {
                entries.append(CertificateSummary(role: "root\(id)", certificate: root, keyURI: token(layout.rootKey(id: id))))
            }
        }
        for cross in roots.cross.sorted(by: { ($0.subjectID, $0.issuerID) < ($1.subjectID, $1.issuerID) }) {
            entries.append(
                CertificateSummary(role: "root\(cross.subjectID)-by-root\(cross.issuerID)", certificate: cross.certificate))
        }
        entries.append(
            CertificateSummary(
                role: "issuing", certificate: try CAStore.readCertificate(layout.issuingCertificate),
                keyURI: token(layout.issuingKey)))
        for id in Self.laterIDs(in: layout.issuingDirectory) {
            entries.append(
                CertificateSummary(
                    role: "issuing\(id)", certificate: try CAStore.readCertificate(layout.issuingCertificate(id: id)),
                    keyURI: token(layout.issuingKey(id: id))))
        }
        if FileManager.default.fileExists(atPath: layout.servicesCertificate) {
            entries.append(
                CertificateSummary(
                    role: "services", certificate: try CAStore.readCertificate(layout.servicesCertificate),
                    keyURI: token(layout.servicesKey)))
        }
        var ownManufacturers: Set<String> = []
        if FileManager.default.fileExists(atPath: layout.manufacturerCertificate) {
            let cert = try CAStore.readCertificate(layout.manufacturerCertificate)
            ownManufacturers.insert(cert.sha256Fingerprint)
            entries.append(CertificateSummary(role: "manufacturer", certificate: cert, keyURI: token(layout.manufacturerKey)))
        }
        for id in Self.laterIDs(in: layout.manufacturersDirectory) {
            let cert = try CAStore.readCertificate(layout.manufacturerCertificate(id: id))
            ownManufacturers.insert(cert.sha256Fingerprint)
            entries.append(
                CertificateSummary(role: "manufacturer\(id)", certificate: cert, keyURI: token(layout.manufacturerKey(id: id))))
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.trustedManufacturers)) ?? []
        for file in files.sorted() where file.hasSuffix(".pem") {
            let text = String(decoding: try SecureFile.read(layout.trustedManufacturers + "/" + file), as: UTF8.self)
            for cert in try PEM.certificates(text) where !ownManufacturers.contains(cert.sha256Fingerprint) {
                entries.append(CertificateSummary(role: "trusted-manufacturer", certificate: cert))
            }
        }
        entries.append(
            CertificateSummary(
                role: "server-tls", certificate: try CAStore.readCertificate(layout.serverCertificate),
                keyURI: token(layout.serverKey)))
        return HierarchySummary(trustDomain: metadata.trustDomain, certificates: entries)
    }

    /// The ids 2, 3, ... of the `<id>.crt` files in `directory`, in order.
    static func laterIDs(in directory: String) -> [Int] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.compactMap { file in
            guard file.hasSuffix(".crt"), let id = Int(file.dropLast(4)), id > 1 else { return nil }
            return id
        }.sorted()
    }
}

extension HierarchySummary {
    /// The summary of a loaded hierarchy.
    public init(hierarchy: CAHierarchy) {
        var entries = [CertificateSummary(role: "root", certificate: hierarchy.root)]
        for id in hierarchy.roots.ids where id > 1 {
            if let root = hierarchy.roots.certificates[id] {
                entries.append(CertificateSummary(role: "root\(id)", certificate: root))
            }
        }
        for cross in hierarchy.roots.cross.sorted(by: { ($0.subjectID, $0.issuerID) < ($1.subjectID, $1.issuerID) }) {
            entries.append(
                CertificateSummary(role: "root\(cross.subjectID)-by-root\(cross.issuerID)", certificate: cross.certificate))
        }
        for authority in hierarchy.issuingAuthorities {
            entries.append(CertificateSummary(role: authority.crlName, certificate: authority.certificate))
        }
        if let services = hierarchy.services {
            entries.append(CertificateSummary(role: "services", certificate: services.certificate))
        }
        for (id, own) in hierarchy.ownManufacturers.sorted(by: { $0.key < $1.key }) {
            entries.append(
                CertificateSummary(role: id == 1 ? "manufacturer" : "manufacturer\(id)", certificate: own.certificate))
        }
        let own = Set(hierarchy.ownManufacturers.values.map(\.certificate))
        for cert in hierarchy.trustedManufacturers where !own.contains(cert) {
            entries.append(CertificateSummary(role: "trusted-manufacturer", certificate: cert))
        }
        if let server = hierarchy.serverChain.first {
            entries.append(CertificateSummary(role: "server-tls", certificate: server))
        }
        self.init(trustDomain: hierarchy.trustDomain, certificates: entries)
    }
}
