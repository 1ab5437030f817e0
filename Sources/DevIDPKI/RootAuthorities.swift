import DevIDCore
import DevIDPKCS11
public import Foundation
import SwiftASN1
public import X509

/// Which roots the hierarchy holds and which one signs (`DATA/ca/roots/state.json`). Root 1 is the one `devid ca
/// init` made; `devid ca root prepare` adds the next. Only the active root signs new issuing CAs; a retired root is
/// no longer one devices should trust.
public struct RootState: Codable, Sendable, Hashable {
    public var active: Int
    public var retired: [Int]

    public init(active: Int = 1, retired: [Int] = []) {
        self.active = active
        self.retired = retired
    }
}

/// A root certified by another root: `subjectID`'s name and key, signed by `issuerID`. With the new root signed
/// by the old one, a device that trusts only the old root validates chains of the new one; with the old one signed
/// by the new, a device that trusts only the new root still validates chains of the old one (the server's own TLS
/// certificate among them).
public struct CrossCertificate: Sendable, Hashable {
    public let subjectID: Int
    public let issuerID: Int
    public let certificate: Certificate
}

/// Every root of the hierarchy, the cross-certificates between them, and their state.
public struct Roots: Sendable {
    /// By id.
    public let certificates: [Int: Certificate]
    public let cross: [CrossCertificate]
    public let state: RootState

    public var ids: [Int] { certificates.keys.sorted() }

    /// The root that signs new issuing CAs.
    public var active: Certificate {
        get throws(DevIDPKIError) {
            guard let root = certificates[state.active] else {
                throw DevIDPKIError(.notFound, "the active root \(state.active) is not in the data directory")
            }
            return root
        }
    }

    /// The roots devices should trust: every root not retired, the active one first.
    public var trusted: [Certificate] {
        let ids = [state.active] + self.ids.filter { $0 != state.active && !state.retired.contains($0) }
        return ids.compactMap { certificates[$0] }
    }

    /// Cross-certificates for the roots still trusted, by whichever root (a retired one too: a device that was
    /// away and trusts only that root learns the new one through it).
    public var trustedCross: [Certificate] {
        cross.filter { !state.retired.contains($0.subjectID) }.map(\.certificate)
    }

    /// The id of a root certificate.
    public func id(of certificate: Certificate) -> Int? {
        certificates.first { $0.value == certificate }?.key
    }

    /// Whether `certificate` carries a valid signature of one of the roots.
    public func signed(_ certificate: Certificate) -> Bool {
        certificates.values.contains {
            certificate.issuer == $0.subject && $0.publicKey.isValidSignature(certificate.signature, for: certificate)
        }
    }

    /// The root-CRL name (`/crl/<name>.crl`) of root `id`: `root`, then `root2`, ...
    public static func crlName(id: Int) -> String { id == 1 ? "root" : "root\(id)" }
}

extension CALayout {
    /// Roots after the first, their cross-certificates and CRLs, and the roots' state.
    public var rootsDirectory: String { caDirectory + "/roots" }
    public var rootState: String { rootsDirectory + "/state.json" }

    public func rootCertificate(id: Int) -> String { id == 1 ? rootCertificate : rootsDirectory + "/\(id).crt" }
    public func rootKey(id: Int) -> String { id == 1 ? rootKey : rootsDirectory + "/\(id).key" }
    public func rootCRLDirectory(id: Int) -> String { id == 1 ? rootCRLDirectory : rootsDirectory + "/\(id)-crl" }
    public func crossCertificate(subject: Int, issuer: Int) -> String {
        rootsDirectory + "/\(subject)-by-\(issuer).crt"
    }
}

extension CAStore {
    /// The roots in the data directory: root 1, each `DATA/ca/roots/<id>.crt`, the cross-certificates
    /// `<subject>-by-<issuer>.crt` (each checked against both roots), and the state (root 1 active when there is none).
    public static func loadRoots(layout: CALayout) throws(DevIDPKIError) -> Roots {
        var certificates = [1: try readCertificate(layout.rootCertificate)]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.rootsDirectory)) ?? []
        for file in files where file.hasSuffix(".crt") {
            if let id = Int(file.dropLast(4)), id > 1 { certificates[id] = try readCertificate(layout.rootCertificate(id: id)) }
        }
        var cross: [CrossCertificate] = []
        for file in files.sorted() where file.hasSuffix(".crt") && file.contains("-by-") {
            let parts = file.dropLast(4).split(separator: "-")
            guard parts.count == 3, let subject = Int(parts[0]), let issuer = Int(parts[2]),
                let subjectRoot = certificates[subject], let issuerRoot = certificates[issuer]
            else { continue }
            let certificate = try readCertificate(layout.rootsDirectory + "/" + file)
            guard certificate.subject == subjectRoot.subject, certificate.publicKey == subjectRoot.publicKey,
                certificate.issuer == issuerRoot.subject,
                issuerRoot.publicKey.isValidSignature(certificate.signature, for: certificate)
            else {
                throw DevIDPKIError(.malformed, "\(file) is not root \(subject) certified by root \(issuer)")
            }
            cross.append(CrossCertificate(subjectID: subject, issuerID: issuer, certificate: certificate))
        }
        var state = RootState()
        if FileManager.default.fileExists(atPath: layout.rootState) {
            guard let decoded = try? JSONDecoder().decode(RootState.self, from: Data(SecureFile.read(layout.rootState)))
            else { throw DevIDPKIError(.malformed, "\(layout.rootState) is not a root state") }
            state = decoded
        }
        return Roots(certificates: certificates, cross: cross, state: state)
    }

    /// `devid ca root prepare`: a new root (P-384, self-signed, `DevID Root CA <id>`), signed ahead CRLs for it,
    /// and the two cross-certificates with the active root, whose key is at `rootKeyPath`. The new root's key is
    /// written to `newRootKeyOut` (or `DATA/ca/roots/<id>.key`), encrypted with `passphrase`. Nothing else changes:
    /// the active root stays active until ``activateRoot(layout:id:)``.
    public static func prepareRoot(
        layout: CALayout, rootKeyPath: String, passphrase: [UInt8], now: Date, newRootKeyOut: String? = nil,
        keyEncryptionRounds: Int = EncryptedPrivateKey.defaultIterations
    ) throws(DevIDPKIError) -> (id: Int, roots: Roots) {
        let roots = try loadRoots(layout: layout)
        let old = try openRoot(layout: layout, rootKeyPath: rootKeyPath, passphrase: passphrase)
        guard let oldID = roots.id(of: old.certificate), oldID == roots.state.active else {
            throw DevIDPKIError(.policyViolation, "\(rootKeyPath) is not the key of the active root \(roots.state.active)")
        }
        let id = (roots.ids.max() ?? 1) + 1
        let keyPath = newRootKeyOut ?? layout.rootKey(id: id)
        guard !CAKeys.exists(keyPath) else {
            throw DevIDPKIError(.alreadyExists, "root key output \(keyPath) already exists")
        }
        let name = try renamed(old.certificate.subject, commonName: "DevID Root CA \(id)")
        // A root whose key is in a token (`--root-key pkcs11:...`) gets its successor in the same token.
        var token: PKCS11URI?
        if PKCS11URI.isURI(rootKeyPath), newRootKeyOut == nil {
            do { token = try PKCS11URI(rootKeyPath).tokenURI } catch { throw DevIDPKIError(error) }
        }
        try SecureFile.createDirectory(layout.rootsDirectory)
        let key = try CAKeys.create(
            keyPath, algorithm: .p384, token: token, label: "root\(id)", passphrase: passphrase, rounds: keyEncryptionRounds)
        let root = try CertificateAuthority.makeRoot(subject: name, key: key, profile: .root, now: now)
        let newByOld = try old.issue(subject: name, publicKey: key.publicKey, profile: .root, now: now)
        let oldByNew = try root.issue(
            subject: old.certificate.subject, publicKey: old.certificate.publicKey, profile: .root, now: now)
        try RootCRLs.sign(
            root: root, count: RootCRLs.defaultCount, now: now, directory: layout.rootCRLDirectory(id: id))
        try SecureFile.write(Array(PEM.bundle([newByOld]).utf8), to: layout.crossCertificate(subject: id, issuer: oldID), mode: 0o644)
        try SecureFile.write(Array(PEM.bundle([oldByNew]).utf8), to: layout.crossCertificate(subject: oldID, issuer: id), mode: 0o644)
        // The root certificate last: a root on disk has its key, CRLs and cross-certificates.
        try SecureFile.write(Array(PEM.bundle([root.certificate]).utf8), to: layout.rootCertificate(id: id), mode: 0o644)
        return (id, try loadRoots(layout: layout))
    }

    /// `devid ca root activate ID`: new issuing CAs are signed by root `id`. Refused for an unknown or retired root.
    public static func activateRoot(layout: CALayout, id: Int) throws(DevIDPKIError) -> Roots {
        let roots = try loadRoots(layout: layout)
        guard roots.certificates[id] != nil else { throw DevIDPKIError(.notFound, "no root \(id)") }
        guard !roots.state.retired.contains(id) else {
            throw DevIDPKIError(.policyViolation, "root \(id) is retired: it never signs again")
        }
        guard roots.state.active != id else { throw DevIDPKIError(.policyViolation, "root \(id) is already active") }
        return try writeRootState(layout: layout, RootState(active: id, retired: roots.state.retired))
    }

    /// `devid ca root retire ID`: devices are told to stop trusting root `id`. Refused for the active root, an
    /// unknown or a retired one, and while an issuing CA that is not revoked chains to it only (`stillIssuing`,
    /// from the registry).
    public static func retireRoot(layout: CALayout, id: Int, stillIssuing: [Int]) throws(DevIDPKIError) -> Roots {
        let roots = try loadRoots(layout: layout)
        guard roots.certificates[id] != nil else { throw DevIDPKIError(.notFound, "no root \(id)") }
        guard roots.state.active != id else {
            throw DevIDPKIError(.policyViolation, "root \(id) is the active root: activate another one first")
        }
        guard !roots.state.retired.contains(id) else {
            throw DevIDPKIError(.policyViolation, "root \(id) is already retired")
        }
        guard stillIssuing.isEmpty else {
            throw DevIDPKIError(
                .policyViolation,
                "issuing CA \(stillIssuing.map(String.init).joined(separator: ", ")) under root \(id) is not revoked: "
                    + "move the fleet to an issuing CA of the active root first (runbooks/break-glass.md)")
        }
        return try writeRootState(layout: layout, RootState(active: roots.state.active, retired: roots.state.retired + [id]))
    }

    private static func writeRootState(layout: CALayout, _ state: RootState) throws(DevIDPKIError) -> Roots {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let json = try? encoder.encode(state) else { throw DevIDPKIError(.malformed, "root state could not be encoded") }
        try SecureFile.createDirectory(layout.rootsDirectory)
        try SecureFile.write(Array(json), to: layout.rootState, mode: 0o644)
        return try loadRoots(layout: layout)
    }
}
