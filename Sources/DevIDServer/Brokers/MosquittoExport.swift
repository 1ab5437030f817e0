public import DevIDCore
public import DevIDPKI
public import Foundation
import SwiftASN1
public import X509

/// What one device may do on an MQTT broker: its topic filters, already expanded for the device
/// (`{tenant}`, `{device}`, `{lot}` replaced) from the topic policy that applies to it.
public struct BrokerGrant: Sendable, Hashable {
    public var device: DeviceID
    public var publish: [String]
    public var subscribe: [String]

    public init(device: DeviceID, publish: [String], subscribe: [String]) {
        self.device = device
        self.publish = publish
        self.subscribe = subscribe
    }
}

/// The files that make a Mosquitto 2.0 broker enforce DevID's identities: `devid export mosquitto --dir D` and
/// `devid serve --mosquitto-dir D` write them.
///
/// - `ca.pem`: the CAs a device's LDevID chains to (every issuing CA that is not revoked, the trusted roots and their
///   cross-certificates), for `cafile`;
/// - `crl.pem`: the issuing CAs' current CRLs (every partition) and the roots' CRLs, for `crlfile`: a revoked
///   LDevID fails the TLS handshake of every new connection once Mosquitto has re-read it (on SIGHUP);
/// - `acl`: one `user <device-id>` block per device that may connect today, with `topic write` (publish) and
///   `topic read` (subscribe and receive) lines generated from the topic policies. A device that is revoked,
///   suspended or has no valid credential has no block, so Mosquitto denies it every topic, including on
///   connections that were open before the change (the ACL is checked on each publish and each delivery);
/// - `devid-mosquitto.conf`: a listener block (TLS, `require_certificate`, `use_identity_as_username`, the files
///   above) to `include_dir` from the main configuration.
///
/// The broker's own certificate and key (`broker.pem`, `broker.key`) are written by ``BrokerCertificate``.
///
/// Every value put on a line (device id, topic filter, path, address) goes through ``BrokerFileEntry``, and
/// ``write(_:to:)`` checks each whole file before it writes any: a value with a line break or another control
/// character fails the export with a one-line reason instead of adding a line of its own to the broker's files.
public struct MosquittoExport: Sendable {
    public static let configurationFile = "devid-mosquitto.conf"
    public static let caFile = "ca.pem"
    public static let crlFile = "crl.pem"
    public static let aclFile = "acl"

    /// The listener's port and bind address written into the configuration.
    public var port: Int
    public var bindAddress: String
    /// Paths of the broker's certificate (chain) and key as Mosquitto should read them.
    public var certificateFile: String
    public var keyFile: String

    public init(port: Int = 8883, bindAddress: String = "0.0.0.0", certificateFile: String, keyFile: String) {
        self.port = port
        self.bindAddress = bindAddress
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// The files' contents by name (relative to the export directory `directory`). Throws when a value would not
    /// stay on its line (``BrokerFileEntry``).
    public func files(
        directory: String, trust: [Certificate], crls: [[UInt8]], grants: [BrokerGrant]
    ) throws(DevIDPKIError) -> [String: [UInt8]] {
        [
            Self.caFile: Array(PEM.bundle(trust).utf8),
            Self.crlFile: Array(Self.crlPEM(crls).utf8),
            Self.aclFile: Array(try Self.acl(grants).utf8),
            Self.configurationFile: Array(try configuration(directory: directory).utf8),
        ]
    }

    /// Writes every file atomically (the configuration last, so a broker never includes a configuration that names
    /// files not written yet). Returns the names of the files whose content changed.
    ///
    /// Every file is checked first (``BrokerFileEntry/check(file:_:)``: a known name, clean lines, and for the ACL
    /// only the lines DevID writes); if one fails, nothing is written.
    @discardableResult
    public static func write(_ files: [String: [UInt8]], to directory: String) throws(DevIDPKIError) -> [String] {
        for (name, bytes) in files { try BrokerFileEntry.check(file: name, bytes) }
        try SecureFile.createDirectory(directory, mode: 0o755)
        var changed: [String] = []
        let order = files.keys.sorted { lhs, rhs in
            (lhs == configurationFile ? 1 : 0, lhs) < (rhs == configurationFile ? 1 : 0, rhs)
        }
        for name in order {
            let path = "\(directory)/\(name)"
            let bytes = files[name] ?? []
            if let existing = try? SecureFile.read(path), existing == bytes { continue }
            // The broker reads these as its own user: readable, not writable by others; nothing here is secret.
            try SecureFile.write(bytes, to: path, mode: 0o644)
            changed.append(name)
        }
        return changed
    }

    /// The listener block.
    public func configuration(directory: String) throws(DevIDPKIError) -> String {
        let directory = try BrokerFileEntry.line(directory, "devid-mosquitto.conf: the export directory")
        let bindAddress = try BrokerFileEntry.line(bindAddress, "devid-mosquitto.conf: the bind address")
        let certificateFile = try BrokerFileEntry.line(certificateFile, "devid-mosquitto.conf: certfile")
        let keyFile = try BrokerFileEntry.line(keyFile, "devid-mosquitto.conf: keyfile")
        return """
            # Written by DevID (devid export mosquitto / devid serve --mosquitto-dir). Do not edit: it is replaced.
            # Include it from mosquitto.conf with:  include_dir \(directory)
            per_listener_settings false
            allow_anonymous false
            acl_file \(directory)/\(Self.aclFile)

            listener \(port) \(bindAddress)
            protocol mqtt
            cafile \(directory)/\(Self.caFile)
            certfile \(certificateFile)
            keyfile \(keyFile)
            tls_version tlsv1.2
            require_certificate true
            use_identity_as_username true
            crlfile \(directory)/\(Self.crlFile)

            """
    }

    /// The CRLs as concatenated `X509 CRL` PEM blocks (OpenSSL, and so Mosquitto, loads them all from one file).
    public static func crlPEM(_ crls: [[UInt8]]) -> String {
        crls.map { der in
            let base64 = Data(der).base64EncodedString()
            var lines: [String] = ["-----BEGIN X509 CRL-----"]
            var index = base64.startIndex
            while index < base64.endIndex {
                let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
                lines.append(String(base64[index..<end]))
                index = end
            }
            lines.append("-----END X509 CRL-----")
            return lines.joined(separator: "\n") + "\n"
        }.joined()
    }

    /// The ACL file: devices sorted by id, filters in policy order. Throws when a device id or filter would not
    /// stay on its line.
    public static func acl(_ grants: [BrokerGrant]) throws(DevIDPKIError) -> String {
        // No timestamp: an unchanged fleet must give byte-identical files, so nothing is rewritten or reloaded.
        var text = "# DevID topic ACL: one block per device that may connect now.\n"
        text += "# A device without a block (revoked, suspended, no valid credential) is denied every topic.\n"
        for grant in grants.sorted(by: { $0.device < $1.device }) {
            text += "\nuser \(try BrokerFileEntry.line(grant.device.rawValue, "acl: a device id"))\n"
            for filter in grant.publish {
                text += "topic write \(try BrokerFileEntry.line(filter, "acl: a topic of device \(grant.device)"))\n"
            }
            for filter in grant.subscribe {
                text += "topic read \(try BrokerFileEntry.line(filter, "acl: a topic of device \(grant.device)"))\n"
            }
        }
        return text
    }
}

/// The one check every broker file writer applies (``MosquittoExport``, ``MosquittoSync``, `devid export
/// mosquitto`): each entry is a single clean line, and each file is made of such lines.
public enum BrokerFileEntry {
    /// The names an export directory holds besides the broker's key and certificate.
    public static let fileNames: Set<String> = [
        MosquittoExport.caFile, MosquittoExport.crlFile, MosquittoExport.aclFile, MosquittoExport.configurationFile,
    ]

    /// `value` if it is one clean line: not empty and without a control character (``ControlCharacters``: line
    /// feed, carriage return, tab, NEL, U+2028, U+2029, ...). `what` names the entry in the one-line reason.
    public static func line(_ value: String, _ what: @autoclosure () -> String) throws(DevIDPKIError) -> String {
        if value.isEmpty { throw refused("\(what()): empty") }
        if let problem = ControlCharacters.lineProblem(value) { throw refused("\(what()): \(problem)") }
        return value
    }

    /// Checks a whole file before it is written: a known name, UTF-8 text whose every line is clean, and for the
    /// ACL only the lines DevID writes (comments, `user <device id>`, and after it `topic read|write <filter>` with
    /// a filter inside one named tenant, `tenants/<tenant>/...`).
    public static func check(file name: String, _ bytes: [UInt8]) throws(DevIDPKIError) {
        guard fileNames.contains(name) else { throw refused("\(name.debugDescription): not a file of the export") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw refused("\(name): not UTF-8 text") }
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let problem = ControlCharacters.lineProblem(String(line)) {
                throw refused("\(name) line \(number + 1): \(problem)")
            }
        }
        if name == MosquittoExport.aclFile, let problem = aclProblem(text) { throw refused("acl \(problem)") }
    }

    /// The first line of an ACL that DevID would not have written, as `line N: why`.
    static func aclProblem(_ text: String) -> String? {
        var inBlock = false
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let at = "line \(number + 1)"
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("user ") {
                guard DeviceID(rawValue: String(line.dropFirst("user ".count))) != nil else {
                    return "\(at): not a device id"
                }
                inBlock = true
                continue
            }
            let filter: Substring
            if line.hasPrefix("topic read ") {
                filter = line.dropFirst("topic read ".count)
            } else if line.hasPrefix("topic write ") {
                filter = line.dropFirst("topic write ".count)
            } else {
                return "\(at): not a line DevID writes"
            }
            // A topic line before any user line would apply to every client.
            guard inBlock else { return "\(at): a topic line outside a user block" }
            guard MQTTTopic.isValidFilter(String(filter)) else { return "\(at): not a valid topic filter" }
            let levels = MQTTTopic.filterLevels(String(filter))
            guard levels.count >= 2, levels[0] == .literal("tenants"), case .literal(let tenant) = levels[1],
                TenantID(rawValue: String(tenant)) != nil
            else { return "\(at): a filter outside one named tenant" }
        }
        return nil
    }

    static func refused(_ reason: String) -> DevIDPKIError {
        DevIDPKIError(.policyViolation, "broker file refused: \(reason); nothing written")
    }
}

/// The broker's TLS server certificate, issued by DevID's services CA (profile `service-tls`): devices, which trust
/// DevID's root, accept the broker, and no device accepts it as the EST server (it has no id-kp-cmcRA, and the services
/// CA's extended key usage does not allow it). The key is made here and written 0600; it never crosses the network.
public enum BrokerCertificate {
    public static let certificateFile = "broker.pem"
    public static let keyFile = "broker.key"

    /// Issues a new certificate unless the one in `directory` names exactly `names`, was signed by `services`, and
    /// has more than a third of its lifetime left at `now`. `record` is called with the new certificate before any
    /// file is written (the registry records it: nothing leaves unrecorded); if it throws, nothing is written.
    /// Returns the certificate it wrote, or nil when the current one stays.
    @discardableResult
    public static func ensure(
        directory: String, names: [String], services: CertificateAuthority, now: Date,
        revocation: RevocationEndpoints? = nil, record: (Certificate) async throws -> Void
    ) async throws -> Certificate? {
        try SecureFile.createDirectory(directory, mode: 0o755)
        let certificatePath = "\(directory)/\(certificateFile)"
        let keyPath = "\(directory)/\(keyFile)"
        if isCurrent(directory: directory, names: names, issuer: services.certificate, now: now) { return nil }
        guard !names.isEmpty else { throw DevIDPKIError(.policyViolation, "the broker certificate needs a host name") }
        let (key, _) = try KeyMaterial.generateWithDER(.p256)
        let certificate = try issue(names: names, publicKey: key.publicKey, services: services, now: now, revocation: revocation)
        let keyPEM: String
        do {
            keyPEM = try key.serializeAsPEM().pemString
        } catch {
            throw DevIDPKIError(.malformed, "the broker key could not be encoded")
        }
        try await record(certificate)
        // Key first, so a certificate on disk always has its key next to it.
        try SecureFile.write(Array(keyPEM.utf8), to: keyPath, mode: 0o600)
        try SecureFile.write(
            Array(PEM.bundle([certificate, services.certificate]).utf8), to: certificatePath, mode: 0o644)
        return certificate
    }

    /// A broker certificate for `publicKey` from the services CA: CN = the first name, every name a SAN, serverAuth
    /// only; with `revocation`, the services CA's CRL Distribution Point and OCSP responder.
    public static func issue(
        names: [String], publicKey: Certificate.PublicKey, services: CertificateAuthority, now: Date,
        revocation: RevocationEndpoints? = nil
    ) throws(DevIDPKIError) -> Certificate {
        guard let first = names.first else {
            throw DevIDPKIError(.policyViolation, "the broker certificate needs a host name")
        }
        let subject: DistinguishedName
        do {
            subject = try DistinguishedName { CommonName(first) }
        } catch {
            throw DevIDPKIError(.malformed, "the broker name is not a valid common name")
        }
        let serial = SerialNumberGenerator.next()
        return try services.issue(
            subject: subject, publicKey: publicKey, profile: .serviceTLS,
            subjectAlternativeNames: names.map(CAStore.generalName(forHost:)), now: now, serialNumber: serial,
            additionalExtensions: try revocation?.extensions(for: serial) ?? [])
    }

    /// True when `directory` holds a broker key and a certificate that names exactly `names`, has more than a
    /// third of its lifetime left at `now`, and was signed by `issuer` (when given) or else by the CA certificate
    /// after it in the file, which must be a services CA: nothing to re-issue. A broker certificate of the issuing
    /// CA (DevID before the services CA) is never current.
    public static func isCurrent(directory: String, names: [String], issuer: Certificate?, now: Date) -> Bool {
        guard FileManager.default.fileExists(atPath: "\(directory)/\(keyFile)"),
            let pem = try? SecureFile.read("\(directory)/\(certificateFile)"),
            let chain = try? PEM.certificates(String(decoding: pem, as: UTF8.self)), let leaf = chain.first,
            Self.names(of: leaf) == Set(names.map(CAStore.generalName(forHost:)))
        else { return false }
        guard let signer = issuer ?? chain.dropFirst().first, signer.isServicesCA,
            leaf.issuer == signer.subject, signer.publicKey.isValidSignature(leaf.signature, for: leaf)
        else {
            return false
        }
        let lifetime = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        return leaf.notValidAfter.timeIntervalSince(now) > lifetime / 3
    }

    static func names(of certificate: Certificate) -> Set<GeneralName> {
        guard let sans = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return Set(sans)
    }
}
