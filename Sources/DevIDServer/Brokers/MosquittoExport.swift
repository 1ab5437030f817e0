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
/// - `ca.pem`: the CAs a device's LDevID chains to (issuing CA, root), for `cafile`;
/// - `crl.pem`: the issuing CA's current CRLs (every partition), for `crlfile`: a revoked LDevID fails the TLS
///   handshake of every new connection once Mosquitto has re-read it (on SIGHUP);
/// - `acl`: one `user <device-id>` block per device that may connect today, with `topic write` (publish) and
///   `topic read` (subscribe and receive) lines generated from the topic policies. A device that is revoked,
///   suspended or has no valid credential has no block, so Mosquitto denies it every topic, including on
///   connections that were open before the change (the ACL is checked on each publish and each delivery);
/// - `devid-mosquitto.conf`: a listener block (TLS, `require_certificate`, `use_identity_as_username`, the files
///   above) to `include_dir` from the main configuration.
///
/// The broker's own certificate and key (`broker.pem`, `broker.key`) are written by ``BrokerCertificate``.
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

    /// The files' contents by name (relative to the export directory `directory`).
    public func files(
        directory: String, trust: [Certificate], crls: [[UInt8]], grants: [BrokerGrant]
    ) -> [String: [UInt8]] {
        [
            Self.caFile: Array(PEM.bundle(trust).utf8),
            Self.crlFile: Array(Self.crlPEM(crls).utf8),
            Self.aclFile: Array(Self.acl(grants).utf8),
            Self.configurationFile: Array(configuration(directory: directory).utf8),
        ]
    }

    /// Writes every file atomically (the configuration last, so a broker never includes a configuration that names
    /// files not written yet). Returns the names of the files whose content changed.
    @discardableResult
    public static func write(_ files: [String: [UInt8]], to directory: String) throws(DevIDPKIError) -> [String] {
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
    public func configuration(directory: String) -> String {
        """
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

    /// The ACL file: devices sorted by id, filters in policy order.
    public static func acl(_ grants: [BrokerGrant]) -> String {
        // No timestamp: an unchanged fleet must give byte-identical files, so nothing is rewritten or reloaded.
        var text = "# DevID topic ACL: one block per device that may connect now.\n"
        text += "# A device without a block (revoked, suspended, no valid credential) is denied every topic.\n"
        for grant in grants.sorted(by: { $0.device < $1.device }) {
            text += "\nuser \(grant.device.rawValue)\n"
            for filter in grant.publish { text += "topic write \(filter)\n" }
            for filter in grant.subscribe { text += "topic read \(filter)\n" }
        }
        return text
    }
}

/// The broker's TLS server certificate, issued by DevID's issuing CA (profile `server-tls`) so that devices, which
/// trust DevID's root, accept the broker. The key is made here and written 0600; it never crosses the network.
public enum BrokerCertificate {
    public static let certificateFile = "broker.pem"
    public static let keyFile = "broker.key"

    /// Issues a new certificate unless the one in `directory` names exactly `names`, chains to `issuing`, and has
    /// more than a third of its lifetime left at `now`. Returns true when it wrote a new one.
    @discardableResult
    public static func ensure(
        directory: String, names: [String], issuing: CertificateAuthority, now: Date
    ) throws(DevIDPKIError) -> Bool {
        try SecureFile.createDirectory(directory, mode: 0o755)
        let certificatePath = "\(directory)/\(certificateFile)"
        let keyPath = "\(directory)/\(keyFile)"
        if isCurrent(directory: directory, names: names, issuer: issuing.certificate, now: now) { return false }
        guard !names.isEmpty else { throw DevIDPKIError(.policyViolation, "the broker certificate needs a host name") }
        let (key, _) = try KeyMaterial.generateWithDER(.p256)
        let subject: DistinguishedName
        do {
            subject = try DistinguishedName { CommonName(names[0]) }
        } catch {
            throw DevIDPKIError(.malformed, "the broker name is not a valid common name")
        }
        let certificate = try issuing.issue(
            subject: subject, publicKey: key.publicKey, profile: .serverTLS,
            subjectAlternativeNames: names.map(CAStore.generalName(forHost:)), now: now)
        let keyPEM: String
        do {
            keyPEM = try key.serializeAsPEM().pemString
        } catch {
            throw DevIDPKIError(.malformed, "the broker key could not be encoded")
        }
        // Key first, so a certificate on disk always has its key next to it.
        try SecureFile.write(Array(keyPEM.utf8), to: keyPath, mode: 0o600)
        try SecureFile.write(
            Array(PEM.bundle([certificate, issuing.certificate]).utf8), to: certificatePath, mode: 0o644)
        return true
    }

    /// True when `directory` holds a broker key and a certificate that names exactly `names`, has more than a
    /// third of its lifetime left at `now`, and (when `issuer` is given) was signed by it: nothing to re-issue.
    public static func isCurrent(directory: String, names: [String], issuer: Certificate?, now: Date) -> Bool {
        guard FileManager.default.fileExists(atPath: "\(directory)/\(keyFile)"),
            let pem = try? SecureFile.read("\(directory)/\(certificateFile)"),
            let leaf = try? PEM.certificates(String(decoding: pem, as: UTF8.self)).first,
            Self.names(of: leaf) == Set(names.map(CAStore.generalName(forHost:)))
        else { return false }
        if let issuer {
            guard leaf.issuer == issuer.subject, issuer.publicKey.isValidSignature(leaf.signature, for: leaf) else {
                return false
            }
        }
        let lifetime = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        return leaf.notValidAfter.timeIntervalSince(now) > lifetime / 3
    }

    static func names(of certificate: Certificate) -> Set<GeneralName> {
        guard let sans = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return Set(sans)
    }
}
