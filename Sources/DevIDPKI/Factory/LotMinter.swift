public import DevIDCore
public import Foundation
import SwiftASN1
import X509

/// `devid factory mint`: issues IDevIDs for a manufacturing lot from the manufacturer CA.
///
/// For each device it writes `OUT/<device-id>/idevid.key` (PKCS#8 PEM, 0600; absent with CSRs),
/// `idevid.crt` and `chain.pem` (IDevID then manufacturer CA), and one `OUT/manifest.json` for the lot.
public struct LotMinter: Sendable {
    public let manufacturer: CertificateAuthority
    public let manufacturerName: String
    /// When set, every IDevID names the manufacturer CRL and the OCSP responder under this base URL.
    public let revocation: RevocationEndpoints?

    public init(
        manufacturer: CertificateAuthority, manufacturerName: String = "DevID Manufacturer",
        revocation: RevocationEndpoints? = nil
    ) {
        self.manufacturer = manufacturer
        self.manufacturerName = manufacturerName
        self.revocation = revocation
    }

    /// The hardware serial of the `index`-th device of `lot` (1-based): `<lot>-000001`.
    public static func hardwareSerial(lot: LotID, index: Int) -> String {
        let digits = String(index)
        return "\(lot.rawValue)-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// Generates a key and an IDevID for each of `count` devices.
    public func mint(
        lot: LotID, tenant: TenantID, count: Int, outputDirectory: String, now: Date,
        progress: (Int) -> Void = { _ in }
    ) throws(DevIDPKIError) -> LotManifest {
        guard (1...1_000_000).contains(count) else {
            throw DevIDPKIError(.policyViolation, "count must be 1-1000000")
        }
        guard DeviceNames.isValidHardwareSerial(Self.hardwareSerial(lot: lot, index: count)) else {
            throw DevIDPKIError(.policyViolation, "lot name too long for hardware serials")
        }
        try prepare(outputDirectory)
        var entries: [LotManifest.Entry] = []
        entries.reserveCapacity(count)
        for index in 1...count {
            let serial = Self.hardwareSerial(lot: lot, index: index)
            let (key, pkcs8) = try KeyMaterial.generateWithDER(.p256)
            let entry = try write(
                hardwareSerial: serial, publicKey: key.publicKey, keyPKCS8: pkcs8, outputDirectory: outputDirectory,
                now: now)
            entries.append(entry)
            progress(index)
        }
        return try finish(lot: lot, tenant: tenant, entries: entries, outputDirectory: outputDirectory, now: now)
    }

    /// Signs device-generated CSRs (for secure elements that never export a key): every `*.csr`, `*.pem` or
    /// `*.der` file in `csrDirectory`. The hardware serial is the CSR subject's serialNumber, else the file name.
    public func sign(
        csrDirectory: String, lot: LotID, tenant: TenantID, outputDirectory: String, now: Date,
        progress: (Int) -> Void = { _ in }
    ) throws(DevIDPKIError) -> LotManifest {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: csrDirectory)
                .filter { $0.hasSuffix(".csr") || $0.hasSuffix(".pem") || $0.hasSuffix(".der") }.sorted()
        } catch {
            throw DevIDPKIError(.io, "cannot read CSR directory \(csrDirectory)")
        }
        guard !files.isEmpty else { throw DevIDPKIError(.notFound, "no .csr, .pem or .der files in \(csrDirectory)") }
        try prepare(outputDirectory)
        var entries: [LotManifest.Entry] = []
        for (index, file) in files.enumerated() {
            let bytes = try SecureFile.read(csrDirectory + "/" + file)
            let der = ESTBase64.decode(bytes) ?? bytes
            let request: EnrollmentRequest
            do {
                request = try EnrollmentRequest(der: der)
            } catch {
                throw DevIDPKIError(error.code, "\(file): \(error.reason)")
            }
            let stem = String(file[..<(file.lastIndex(of: ".") ?? file.endIndex)])
            let serial = DeviceNames.firstValue(DeviceNames.serialNumberAttribute, in: request.csr.subject) ?? stem
            guard DeviceNames.isValidHardwareSerial(serial) else {
                throw DevIDPKIError(.policyViolation, "\(file): hardware serial must be 1-64 printable characters")
            }
            try request.check(profile: .idevid)
            entries.append(
                try write(
                    hardwareSerial: serial, publicKey: request.publicKey, keyPKCS8: nil,
                    outputDirectory: outputDirectory, now: now))
            progress(index + 1)
        }
        return try finish(lot: lot, tenant: tenant, entries: entries, outputDirectory: outputDirectory, now: now)
    }

    private func prepare(_ outputDirectory: String) throws(DevIDPKIError) {
        if FileManager.default.fileExists(atPath: outputDirectory + "/manifest.json") {
            throw DevIDPKIError(.alreadyExists, "\(outputDirectory) already holds a lot (manifest.json)")
        }
        try SecureFile.createDirectory(outputDirectory)
    }

    private func write(
        hardwareSerial: String, publicKey: Certificate.PublicKey, keyPKCS8: [UInt8]?, outputDirectory: String,
        now: Date
    ) throws(DevIDPKIError) -> LotManifest.Entry {
        let certificate = try manufacturer.issueIDevID(
            hardwareSerial: hardwareSerial, manufacturer: manufacturerName, publicKey: publicKey, now: now,
            revocation: revocation)
        let id = DeviceID(derivedFromHardwareSerial: hardwareSerial)
        let directory = outputDirectory + "/" + id.rawValue
        try SecureFile.createDirectory(directory)
        if let keyPKCS8 {
            let pem = PEMDocument(type: "PRIVATE KEY", derBytes: keyPKCS8).pemString + "\n"
            try SecureFile.write(Array(pem.utf8), to: directory + "/idevid.key", mode: 0o600)
        }
        try SecureFile.write(Array(PEM.bundle([certificate]).utf8), to: directory + "/idevid.crt", mode: 0o644)
        try SecureFile.write(
            Array(PEM.bundle([certificate, manufacturer.certificate]).utf8), to: directory + "/chain.pem", mode: 0o644)
        return LotManifest.Entry(
            deviceID: id, hardwareSerial: hardwareSerial, idevidSHA256: certificate.sha256Fingerprint,
            idevidSerial: certificate.devidSerial)
    }

    private func finish(
        lot: LotID, tenant: TenantID, entries: [LotManifest.Entry], outputDirectory: String, now: Date
    ) throws(DevIDPKIError) -> LotManifest {
        var seen = Set<DeviceID>()
        for entry in entries where !seen.insert(entry.deviceID).inserted {
            throw DevIDPKIError(.policyViolation, "two devices map to device id \(entry.deviceID)")
        }
        let manifest = LotManifest(
            lot: lot, tenant: tenant, manufacturerCASHA256: manufacturer.certificate.sha256Fingerprint, createdAt: now,
            devices: entries)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        guard let json = try? encoder.encode(manifest) else {
            throw DevIDPKIError(.malformed, "manifest could not be encoded")
        }
        try SecureFile.write(Array(json), to: outputDirectory + "/manifest.json", mode: 0o644)
        return manifest
    }
}
