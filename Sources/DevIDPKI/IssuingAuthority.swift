public import DevIDCore
public import Foundation
import SwiftASN1
public import X509

/// One issuing CA of the hierarchy, with its key: id 1 is the CA `devid ca init` made (`DATA/ca/issuing.crt`),
/// later ones were made by `devid ca issuing prepare` (`DATA/ca/issuing/<id>.crt`). Which one signs is the
/// registry's word (``IssuingCA``), not the files'.
public struct IssuingAuthority: Sendable {
    public let id: Int
    public let ca: CertificateAuthority

    public init(id: Int, ca: CertificateAuthority) {
        self.id = id
        self.ca = ca
    }

    public var certificate: Certificate { ca.certificate }

    /// The CA's CRL file name: `issuing` for CA 1 (what its LDevIDs already name), `issuing<id>` after.
    public var crlName: String { Self.crlName(id: id) }

    public static func crlName(id: Int) -> String { id == 1 ? "issuing" : "issuing\(id)" }

    /// The issuer as credentials record it.
    public var registryIssuer: String { String(describing: certificate.subject) }

    /// The registry's record of this CA, in `state`.
    public func record(state: IssuingCAState, at now: Date) -> IssuingCA {
        IssuingCA(
            id: id, subject: registryIssuer, sha256: certificate.sha256Fingerprint,
            serial: certificate.devidSerial.rawValue, notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter, state: state, createdAt: now, stateChangedAt: now)
    }
}

extension CALayout {
    /// Where `devid ca issuing prepare` writes the issuing CAs after the first.
    public var issuingDirectory: String { caDirectory + "/issuing" }

    public func issuingCertificate(id: Int) -> String {
        id == 1 ? issuingCertificate : issuingDirectory + "/\(id).crt"
    }

    public func issuingKey(id: Int) -> String {
        id == 1 ? issuingKey : issuingDirectory + "/\(id).key"
    }
}

extension CAStore {
    /// Every issuing CA in the data directory, by id: CA 1 and each `DATA/ca/issuing/<id>.crt` with its key. Each
    /// must be signed by one of `roots` (the hierarchy's, ``loadRoots(layout:)``), or the load fails naming the file. `first`, when given, is CA 1 already loaded
    /// (its key is not decrypted again).
    public static func loadIssuingAuthorities(
        layout: CALayout, passphrase: [UInt8], roots: Roots, first: CertificateAuthority? = nil
    ) throws(DevIDPKIError) -> [IssuingAuthority] {
        var ids = [1]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.issuingDirectory)) ?? []
        for file in files where file.hasSuffix(".crt") {
            if let id = Int(file.dropLast(4)), id > 1, String(id) + ".crt" == file { ids.append(id) }
        }
        var authorities: [IssuingAuthority] = []
        for id in ids.sorted() {
            if id == 1, let first {
                authorities.append(IssuingAuthority(id: 1, ca: first))
                continue
            }
            let path = layout.issuingCertificate(id: id)
            let certificate = try readCertificate(path)
            guard roots.signed(certificate) else {
                throw DevIDPKIError(.malformed, "\(path) is not signed by the root in \(layout.rootCertificate)")
            }
            let ca = try CertificateAuthority(
                certificate: certificate, signingKey: try readKey(layout.issuingKey(id: id), passphrase: passphrase))
            authorities.append(IssuingAuthority(id: id, ca: ca))
        }
        return authorities
    }

    /// A new issuing CA signed by the active root (`devid ca issuing prepare`): a P-256 key and certificate with the
    /// next id, the first CA's subject with the common name `DevID Issuing CA <id>`, and a CRL Distribution Point
    /// at the signing root's CRL (the first CA's URL, with `root<n>.crl` for root n). The key at `rootKeyPath`
    /// (encrypted with `passphrase`) must be the active root's; it is used and dropped, never kept. The key is written before the certificate, so a certificate on disk always has
    /// its key.
    public static func prepareIssuing(
        layout: CALayout, rootKeyPath: String, passphrase: [UInt8], now: Date,
        keyEncryptionRounds: Int = EncryptedPrivateKey.defaultIterations
    ) throws(DevIDPKIError) -> IssuingAuthority {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        let root = try openRoot(layout: layout, rootKeyPath: rootKeyPath, passphrase: passphrase)
        let roots = try loadRoots(layout: layout)
        let rootID = roots.id(of: root.certificate) ?? 1
        guard rootID == roots.state.active else {
            throw DevIDPKIError(.policyViolation, "\(rootKeyPath) is not the key of the active root \(roots.state.active)")
        }
        let existing = try loadIssuingAuthorities(layout: layout, passphrase: passphrase, roots: roots)
        let id = (existing.map(\.id).max() ?? 1) + 1
        let first = try readCertificate(layout.issuingCertificate)
        let name = try renamed(first.subject, commonName: "DevID Issuing CA \(id)")
        // The base URL the first CA's CRL Distribution Point names (`<base>/crl/root.crl`): the new CA names its own
        // root's CRL and certificate under it.
        var copied: [Certificate.Extension] = []
        if let uri = RevocationExtensions.crlDistributionPointURI(of: first), uri.hasSuffix("/crl/root.crl") {
            copied = try RevocationExtensions.caExtensions(
                baseURL: String(uri.dropLast("/crl/root.crl".count)), rootName: Roots.crlName(id: rootID))
        }
        try SecureFile.createDirectory(layout.issuingDirectory)
        // In the first issuing CA's token when it has one, else an encrypted file; written before the certificate.
        let key = try CAKeys.create(
            layout.issuingKey(id: id), algorithm: .p256, token: CAKeys.token(layout: layout), label: "issuing\(id)",
            passphrase: passphrase, rounds: keyEncryptionRounds)
        let certificate = try root.issue(
            subject: name, publicKey: key.publicKey, profile: .issuing, now: now, additionalExtensions: copied)
        try SecureFile.write(Array(PEM.bundle([certificate]).utf8), to: layout.issuingCertificate(id: id), mode: 0o644)
        return IssuingAuthority(id: id, ca: try CertificateAuthority(certificate: certificate, signingKey: key))
    }
}
