public import DevIDCore
import DevIDPKI
import Foundation
public import Logging
import SwiftASN1
public import X509

/// First enrollment: a new key, a CSR, `/simpleenroll` with an IDevID or a claim token, checks, then the state
/// directory.
///
/// Nothing is written unless the issued certificate is for the new key and chains to the trust bundle at the
/// injected time; the files are then installed crash-safely (``AgentStateDirectory/install(_:)``).
public struct Enroller: Sendable {
    /// How the device proves itself to the EST server.
    public enum Bootstrap: Sendable {
        /// TLS client authentication with the factory identity (leaf first; the chain may include the manufacturer
        /// CA). The CSR names no device: the server finds the device by the IDevID's hardware serial.
        case idevid(certificateChain: [Certificate], key: Certificate.PrivateKey)
        /// A claim token. With a device id: HTTP Basic (user = device id, password = token) and the CSR's CN is the
        /// device id. Without: `Bearer`, and the server takes the device from the token (a token not bound to a
        /// device needs a device id).
        case token(String, deviceID: String?)

        var name: String {
            switch self {
            case .idevid: "idevid"
            case .token: "claim-token"
            }
        }
    }

    public let logger: Logger
    /// A PKCS#11 token URI: the LDevID key is generated inside it (`--key-uri`); nil keeps it in `key.pem`.
    public let keyURI: String?

    public init(logger: Logger = Logger(label: "devid.agent"), keyURI: String? = nil) {
        self.logger = logger
        self.keyURI = keyURI
    }

    /// Enrolls and installs the new identity in `stateDirectory`.
    ///
    /// Steps: `GET /cacerts` (also proves the server chains to `trustBundle` before any secret is sent), a fresh
    /// P-256 key and CSR, `POST /simpleenroll` on the same connection, then the checks — the certificate's public key is the new key's, and
    /// it chains to `trustBundle` (with the `/cacerts` certificates as intermediates) at `clock.now()` — then the
    /// files.
    ///
    /// - Parameters:
    ///   - server: the EST base URL, e.g. `https://127.0.0.1:8443`.
    ///   - trustBundle: the CA certificates the server's TLS certificate and the issued LDevID must chain to.
    ///   - label: the EST label (`/.well-known/est/<label>/`); DevID reads it as the tenant an unknown IDevID
    ///     registers into.
    ///   - clock: the time the issued certificate is checked at. Pass a ``ServerClock`` (also as `serverClock`) so a
    ///     device with a wrong clock checks at the server's time, learnt from the `/cacerts` answer.
    ///   - serverClock: told the server's time from every response.
    ///   - configuration: the agent's settings (`agent.json`), with the server's URL as the enrollment used it. They
    ///     are written once the issued certificate passed its checks, *before* the identity is installed: a crash in
    ///     between leaves settings without an identity (enroll again), never an identity without its settings, which
    ///     `devid agent run` would renew with a key in a file instead of the token, without the IDevID and the hook.
    /// - Throws: ``AgentError`` (or `CancellationError`); nothing in `stateDirectory` has changed then, but for
    ///   `agent.json` when the installation failed after it was written.
    public func enroll(
        server: String, trustBundle: [Certificate], stateDirectory: String, bootstrap: Bootstrap,
        label: String? = nil, clock: any WallClock, serverClock: ServerClock? = nil,
        configuration: AgentConfiguration? = nil
    ) async throws -> EnrolledIdentity {
        let directory = AgentStateDirectory(path: stateDirectory)
        let deviceID: DeviceID?
        let identity: ESTClient.Identity?
        let authorization: EnrollAuthorization
        switch bootstrap {
        case .idevid(let chain, let key):
            guard let leaf = chain.first else { throw AgentError(.invalidArgument, "the IDevID chain is empty") }
            guard leaf.publicKey == key.publicKey else {
                throw AgentError(.invalidArgument, "the IDevID key does not belong to the IDevID certificate")
            }
            deviceID = nil
            identity = ESTClient.Identity(certificateChain: chain, privateKey: key)
            authorization = .clientCertificate
        case .token(let token, let id):
            guard !token.isEmpty else { throw AgentError(.invalidArgument, "the claim token is empty") }
            if let id {
                guard let valid = DeviceID(rawValue: id) else {
                    throw AgentError(
                        .invalidArgument, "invalid device id (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)")
                }
                deviceID = valid
                authorization = .basic(user: valid.rawValue, password: token)
            } else {
                deviceID = nil
                authorization = .bearer(token)
            }
            identity = nil
        }

        let client = try ESTClient(
            baseURL: server, trustRoots: trustBundle, clientIdentity: identity, label: label, serverClock: serverClock,
            logger: logger)
        let caCertificates: [Certificate]
        let certificate: Certificate
        var generated: (key: Certificate.PrivateKey, pkcs8: [UInt8])?
        // A key made in a token for an enrollment that fails is deleted again (a secure element's memory is small).
        func discardKey() {
            if let material = generated?.pkcs8 { AgentKeys.destroyIfUnreferenced(material, in: directory) }
        }
        do {
            // One connection for both requests; the key is made only once /cacerts has answered.
            (caCertificates, certificate) = try await client.cacertsThenSimpleEnroll {
                let key = try Self.newKey(in: keyURI)
                generated = key
                let csr = try Self.csr(deviceID: deviceID, key: key.key)
                logger.debug(
                    "enrolling",
                    metadata: [
                        "server": "\(client.baseURL)", "bootstrap": "\(bootstrap.name)",
                        "device": "\(deviceID?.rawValue ?? "-")",
                    ])
                return (csr, authorization)
            }
        } catch {
            try? await client.shutdown()
            discardKey()
            throw error
        }
        let serverDate = client.lastServerTime ?? client.lastServerDate
        try? await client.shutdown()
        guard let key = generated else { throw AgentError(.invalidState, "no key was generated") }

        // Checks: nothing is written before they pass.
        let now = clock.now()
        let enrolled: EnrolledIdentity
        do {
            let chain = try await Self.checkIssued(
                certificate, publicKey: key.key.publicKey, device: deviceID, trustBundle: trustBundle,
                intermediates: caCertificates, at: now)
            enrolled = try EnrolledIdentity(
                certificate: certificate, serverURL: client.baseURL, bootstrap: bootstrap.name, enrolledAt: now,
                serverDate: serverDate)
            if var configuration {
                configuration.serverURL = client.baseURL
                try configuration.save(stateDirectory: stateDirectory)
            }
            try directory.install(
                AgentStateDirectory.Installation(
                    keyPKCS8: key.pkcs8, certificate: certificate, chain: chain, trustBundle: trustBundle,
                    identity: enrolled))
        } catch {
            discardKey()
            throw error
        }
        logger.debug(
            "enrolled",
            metadata: [
                "device": "\(enrolled.deviceID)", "serial": "\(enrolled.serial)",
                "tenant": "\(enrolled.tenant?.rawValue ?? "-")",
            ])
        return enrolled
    }

    /// The checks an issued certificate must pass before anything is written: it is for `publicKey`, it names
    /// `device` (when the agent asked for one), and it chains to `trustBundle` at `time`.
    ///
    /// - Returns: the validated chain, leaf first, trust anchor last.
    /// - Throws: ``AgentError`` `.untrustedCertificate`.
    static func checkIssued(
        _ certificate: Certificate, publicKey: Certificate.PublicKey, device: DeviceID?, trustBundle: [Certificate],
        intermediates: [Certificate], at time: Date
    ) async throws(AgentError) -> [Certificate] {
        guard certificate.publicKey == publicKey else {
            throw AgentError(.untrustedCertificate, "the issued certificate is not for the key the agent generated")
        }
        if let device, DeviceNames.firstValue(.RDNAttributeType.commonName, in: certificate.subject) != device.rawValue
        {
            throw AgentError(.untrustedCertificate, "the issued certificate names another device than \(device)")
        }
        let verifier = TrustVerifier(anchors: trustBundle, intermediates: intermediates)
        switch await verifier.validate(leaf: certificate, at: time) {
        case .trusted(let chain):
            return chain
        case .untrusted(let reason):
            throw AgentError(.untrustedCertificate, "the issued certificate was refused: \(reason)")
        }
    }

    /// A fresh P-256 key and its PKCS#8 DER.
    /// A fresh P-256 key: in the token `keyURI` names, else in memory; and its material (``AgentKeys``).
    static func newKey(in keyURI: String? = nil) throws(AgentError) -> (key: Certificate.PrivateKey, pkcs8: [UInt8]) {
        let generated = try AgentKeys.generate(in: keyURI)
        return (generated.key, generated.material)
    }

    /// The DER of a PKCS#10 CSR for `key`: subject CN = device id if known, else an empty subject; no attributes.
    static func csr(deviceID: DeviceID?, key: Certificate.PrivateKey) throws(AgentError) -> [UInt8] {
        do {
            let subject =
                try deviceID.map { id in try DistinguishedName { CommonName(id.rawValue) } }
                ?? DistinguishedName()
            let request = try CertificateSigningRequest(
                version: .v1, subject: subject, privateKey: key, attributes: .init(),
                signatureAlgorithm: .ecdsaWithSHA256)
            var serializer = DER.Serializer()
            try serializer.serialize(request)
            return serializer.serializedBytes
        } catch {
            throw AgentError(.invalidState, "could not build the CSR")
        }
    }
}
