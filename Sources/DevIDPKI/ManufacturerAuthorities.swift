import DevIDCore
public import Foundation
import SwiftASN1
public import X509

/// Which of DevID's own manufacturer CAs mints new lots (`DATA/ca/manufacturers/state.json`). CA 1 is the one
/// `devid ca init` made (`DATA/ca/manufacturer.crt`); `devid ca manufacturer prepare` adds the next. Lots minted by
/// an earlier CA stay valid: each CA stays trusted until it is distrusted.
public struct ManufacturerState: Codable, Sendable, Hashable {
    public var active: Int

    public init(active: Int = 1) { self.active = active }
}

extension CALayout {
    public var manufacturersDirectory: String { caDirectory + "/manufacturers" }
    public var manufacturerState: String { manufacturersDirectory + "/state.json" }

    public func manufacturerCertificate(id: Int) -> String {
        id == 1 ? manufacturerCertificate : manufacturersDirectory + "/\(id).crt"
    }

    public func manufacturerKey(id: Int) -> String { id == 1 ? manufacturerKey : manufacturersDirectory + "/\(id).key" }

    /// The copy in `trusted-manufacturers/` that makes the server accept the CA's IDevIDs.
    public func trustedOwnManufacturer(id: Int) -> String {
        trustedManufacturers + (id == 1 ? "/devid-manufacturer.pem" : "/devid-manufacturer-\(id).pem")
    }
}

extension CAStore {
    /// DevID's own manufacturer CAs with their keys, by id (empty when it has none), and which one is active.
    public static func loadOwnManufacturers(
        layout: CALayout, passphrase: [UInt8]
    ) throws(DevIDPKIError) -> (cas: [Int: CertificateAuthority], state: ManufacturerState) {
        var ids: [Int] = CAKeys.exists(layout.manufacturerKey) ? [1] : []
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.manufacturersDirectory)) ?? []
        for file in files where file.hasSuffix(".crt") {
            if let id = Int(file.dropLast(4)), id > 1 { ids.append(id) }
        }
        var cas: [Int: CertificateAuthority] = [:]
        for id in ids {
            cas[id] = try CertificateAuthority(
                certificate: try readCertificate(layout.manufacturerCertificate(id: id)),
                signingKey: try readKey(layout.manufacturerKey(id: id), passphrase: passphrase))
        }
        var state = ManufacturerState()
        if FileManager.default.fileExists(atPath: layout.manufacturerState) {
            guard
                let decoded = try? JSONDecoder().decode(
                    ManufacturerState.self, from: Data(SecureFile.read(layout.manufacturerState)))
            else { throw DevIDPKIError(.malformed, "\(layout.manufacturerState) is not a manufacturer state") }
            state = decoded
        }
        return (cas, state)
    }

    /// The revocation extensions of DevID's own manufacturer CA `id`: a CRL Distribution Point at the CRL it signs
    /// for its IDevIDs (`<base>/crl/manufacturer.crl`, `manufacturer<id>.crl`) and an Authority Information Access
    /// (caIssuers) where its certificate is served (`<base>/ca/manufacturer<id>.crt`). It is a self-signed trust
    /// anchor, so no relying party checks its own revocation through them; they tell a relying party that holds the
    /// anchor where the CRL of its IDevIDs and the anchor itself are published. None without a base URL.
    static func ownManufacturerExtensions(baseURL: String?, id: Int) throws(DevIDPKIError) -> [Certificate.Extension] {
        guard let baseURL else { return [] }
        let name = id == 1 ? "manufacturer" : "manufacturer\(id)"
        return [
            try RevocationExtensions.crlDistributionPoint(uri: RevocationEndpoints(baseURL: baseURL, caName: name).crlURL(name: name)),
            try RevocationExtensions.authorityInformationAccess(caIssuers: "\(baseURL)/ca/\(name).crt"),
        ]
    }

    /// `devid ca manufacturer prepare`: a new manufacturer CA of DevID's own (P-256, self-signed, `DevID
    /// Manufacturer CA <id>`), trusted from the next start of `devid serve` (a copy in `trusted-manufacturers/`),
    /// minting nothing until ``activateManufacturer(layout:id:)``.
    public static func prepareManufacturer(
        layout: CALayout, passphrase: [UInt8], now: Date,
        keyEncryptionRounds: Int = EncryptedPrivateKey.defaultIterations
    ) throws(DevIDPKIError) -> Int {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        let existing = try loadOwnManufacturers(layout: layout, passphrase: passphrase)
        let id = max(1, existing.cas.keys.max() ?? 1) + 1
        let name = try renamed(try readCertificate(layout.issuingCertificate).subject, commonName: "DevID Manufacturer CA \(id)")
        try SecureFile.createDirectory(layout.manufacturersDirectory)
        // In the first issuing CA's token when it has one, else an encrypted file.
        let key = try CAKeys.create(
            layout.manufacturerKey(id: id), algorithm: .p256, token: CAKeys.token(layout: layout),
            label: "manufacturer\(id)", passphrase: passphrase, rounds: keyEncryptionRounds)
        let base = RevocationExtensions.crlDistributionPointURI(of: try readCertificate(layout.issuingCertificate))
            .flatMap { $0.hasSuffix("/crl/root.crl") ? String($0.dropLast("/crl/root.crl".count)) : nil }
        let ca = try CertificateAuthority.makeRoot(
            subject: name, key: key, profile: .manufacturer, now: now,
            additionalExtensions: try ownManufacturerExtensions(baseURL: base, id: id))
        try SecureFile.write(Array(PEM.bundle([ca.certificate]).utf8), to: layout.trustedOwnManufacturer(id: id), mode: 0o644)
        try SecureFile.write(Array(PEM.bundle([ca.certificate]).utf8), to: layout.manufacturerCertificate(id: id), mode: 0o644)
        return id
    }

    /// `devid ca manufacturer activate ID`: `devid factory mint` signs new lots with CA `id`. Refused for an unknown or
    /// distrusted CA.
    public static func activateManufacturer(layout: CALayout, id: Int, passphrase: [UInt8]) throws(DevIDPKIError) {
        let own = try loadOwnManufacturers(layout: layout, passphrase: passphrase)
        guard own.cas[id] != nil else { throw DevIDPKIError(.notFound, "no manufacturer CA \(id) of DevID's own") }
        guard own.state.active != id else {
            throw DevIDPKIError(.policyViolation, "manufacturer CA \(id) is already active")
        }
        guard FileManager.default.fileExists(atPath: layout.trustedOwnManufacturer(id: id)) else {
            throw DevIDPKIError(.policyViolation, "manufacturer CA \(id) is distrusted: it never mints again")
        }
        guard let json = try? JSONEncoder().encode(ManufacturerState(active: id)) else {
            throw DevIDPKIError(.malformed, "manufacturer state could not be encoded")
        }
        try SecureFile.createDirectory(layout.manufacturersDirectory)
        try SecureFile.write(Array(json), to: layout.manufacturerState, mode: 0o644)
    }

    /// `devid ca manufacturer distrust ID`: the server stops accepting IDevIDs of CA `id` from its next start (its
    /// copy in `trusted-manufacturers/` is renamed `.distrusted`). Refused for the active CA.
    public static func distrustManufacturer(layout: CALayout, id: Int, passphrase: [UInt8]) throws(DevIDPKIError) {
        let own = try loadOwnManufacturers(layout: layout, passphrase: passphrase)
        guard own.cas[id] != nil else { throw DevIDPKIError(.notFound, "no manufacturer CA \(id) of DevID's own") }
        guard own.state.active != id else {
            throw DevIDPKIError(.policyViolation, "manufacturer CA \(id) is the active one: activate another one first")
        }
        let path = layout.trustedOwnManufacturer(id: id)
        guard FileManager.default.fileExists(atPath: path) else {
            throw DevIDPKIError(.policyViolation, "manufacturer CA \(id) is already distrusted")
        }
        guard rename(path, path + ".distrusted") == 0 else {
            throw DevIDPKIError(.notFound, "\(path) could not be renamed")
        }
    }
}
