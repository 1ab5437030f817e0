import DevIDCore
import DevIDPKCS11
import DevIDPKI
public import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
public import X509

/// An EST client (RFC 7030) for DevID's `/.well-known/est/...` endpoints, on its own small SwiftNIO HTTPS transport.
///
/// Each request is one TLS 1.2+ connection (``HTTPSTransport``), except that an enrollment or a renewal sends
/// `/cacerts` and its `simpleenroll` or `simplereenroll` on one (``cacertsThenSimpleEnroll(prepare:)``). It presents
/// the client certificate if one is given
/// (an IDevID to enroll, the current LDevID to re-enroll) and checks the server's certificate with ``ServerTrust``:
/// it must chain to the trust bundle (never the system roots), name the host of `baseURL`, allow `serverAuth`, and
/// be valid **at the agent's corrected time** — ``ServerClock/now()``, the device clock plus the skew learnt from the
/// server's answers — not at the machine's raw clock, which BoringSSL would use. Connection failures are not
/// retried: the caller (the agent's scheduler) decides when to try again, using ``AgentError/retryAfter`` when the
/// server gave one.
///
/// ## A device clock reset to 1970
/// Before any request, if the corrected time is earlier than the *time floor* — the newest `notBefore` among the
/// trust bundle and the client certificate chain, none of which can have been issued in the future — the device
/// clock is known to be wrong. The client then sends a *time probe* first: `GET /cacerts` on a separate connection
/// with no client certificate, no credentials and no body, whose server chain is validated at
/// `max(floor, leaf.notBefore)` (signatures, basic constraints, name, serverAuth, and that the certificate is not
/// known to have expired before the floor). Only the server's time is taken from its answer; the real request then
/// goes on a new connection, validated strictly at the corrected time, and fails if the server's time is still
/// before the floor. A device whose clock is plausible (not before the floor) never probes: an expired or not yet
/// valid server certificate is refused. See `docs/agent.md` ("Time and the server's certificate").
///
/// Every response's `Date` header is kept in ``lastServerDate``, and its `DevID-Time` header (the server's own,
/// possibly injected, clock) in ``lastServerTime`` and reported to the ``ServerClock`` given, for clock-skew
/// tracking. Besides EST, the client speaks DevID's check-in, `GET /v1/device/status` (``deviceStatus()``).
/// ``shutdown()`` is kept for callers; connections do not outlive a request (or the enrollment's pair).
///
/// Errors are ``AgentError`` (or `CancellationError` when the calling task is cancelled).
public final class ESTClient: Sendable {
    /// A TLS client identity: the certificate chain to present (leaf first) and the leaf's private key.
    public struct Identity: Sendable {
        public var certificateChain: [Certificate]
        public var privateKey: Certificate.PrivateKey

        public init(certificateChain: [Certificate], privateKey: Certificate.PrivateKey) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    /// The largest response body read, in bytes.
    static let maximumBodyBytes = 1 << 20

    /// The EST base URL without a trailing slash, e.g. `https://127.0.0.1:8443`.
    public let baseURL: String
    /// The optional `/.well-known/est/<label>/` segment (DevID reads it as a tenant).
    public let label: String?
    private let host: String
    /// The base URL's path (percent-encoded, no trailing slash), prefixed to every request target.
    private let pathPrefix: String
    /// Requests: with the client identity, the server checked at the corrected time.
    private let transport: HTTPSTransport
    /// Time probes: no client identity.
    private let probeTransport: HTTPSTransport
    private let logger: Logger
    private let opened = Atomic<Int>(0)
    private let serverDate = Mutex<Date?>(nil)
    private let serverTime = Mutex<Date?>(nil)
    /// The time the server's certificate is checked at: the caller's ``ServerClock``, else one of our own over the
    /// system clock.
    private let clock: ServerClock

    /// - Parameters:
    ///   - baseURL: `https://host[:port]`; a path prefix is kept, a trailing slash dropped.
    ///   - trustRoots: the only certificates the server's chain may end in.
    ///   - clientIdentity: presented when the server asks for a client certificate.
    ///   - label: EST label (RFC 7030 §3.2.2), or nil for the default.
    ///   - connectTimeout: TCP and TLS connection establishment.
    ///   - requestTimeout: a whole request, from connecting to the last body byte.
    ///   - serverClock: told the server's time from every response's `DevID-Time` (or, without one, `Date`); the
    ///     server's certificate is validated at its ``ServerClock/now()``. Without one the client keeps its own over
    ///     the system clock.
    /// - Throws: ``AgentError`` `.invalidArgument` for a URL that is not `https://` with a host, an empty trust
    ///   bundle, or a certificate or key NIOSSL cannot load.
    public init(
        baseURL: String, trustRoots: [Certificate], clientIdentity: Identity? = nil, label: String? = nil,
        connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(60),
        serverClock: ServerClock? = nil, logger: Logger = Logger(label: "devid.agent.est")
    ) throws(AgentError) {
        var trimmed = baseURL
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let url = URL(string: trimmed), url.scheme?.lowercased() == "https", let rawHost = url.host,
            !rawHost.isEmpty
        else {
            throw AgentError(
                .invalidArgument, "EST server URL must be https://host[:port], not \(Self.printable(baseURL))")
        }
        guard url.query == nil, url.fragment == nil else {
            throw AgentError(.invalidArgument, "EST server URL must not have a query or fragment")
        }
        guard !trustRoots.isEmpty else {
            throw AgentError(.invalidArgument, "the trust bundle holds no certificate")
        }
        if let label, label.isEmpty || label.contains("/") || label.contains("?") || label.contains("#") {
            throw AgentError(.invalidArgument, "EST label must be one path segment")
        }
        let host = rawHost.hasPrefix("[") && rawHost.hasSuffix("]") ? String(rawHost.dropFirst().dropLast()) : rawHost
        let port = url.port ?? 443
        guard (1...65_535).contains(port) else {
            throw AgentError(.invalidArgument, "EST server URL has an invalid port")
        }
        var pathPrefix = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? ""
        while pathPrefix.hasSuffix("/") { pathPrefix.removeLast() }

        // BoringSSL's own chain check is replaced by ServerTrust (the custom verification callback); the hostname is
        // checked there too, so NIOSSL's post-handshake hostname check is off.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .noHostnameVerification
        do {
            tls.trustRoots = .certificates(
                try trustRoots.map { try NIOSSLCertificate(bytes: $0.derBytes, format: .der) })
        } catch {
            throw AgentError(.invalidArgument, "a trust bundle certificate cannot be loaded for TLS")
        }
        let probeTLS = tls
        if let clientIdentity {
            guard !clientIdentity.certificateChain.isEmpty else {
                throw AgentError(.invalidArgument, "the client certificate chain is empty")
            }
            do {
                tls.certificateChain = try clientIdentity.certificateChain.map {
                    .certificate(try NIOSSLCertificate(bytes: $0.derBytes, format: .der))
                }
            } catch {
                throw AgentError(.invalidArgument, "the client certificate cannot be loaded for TLS")
            }
            do {
                if let tokenKey = PKCS11PrivateKey.opened(publicKey: clientIdentity.privateKey.publicKey) {
                    // A key in a token: the handshake's signature is made there.
                    tls.privateKey = .privateKey(PKCS11TLSKey(tokenKey).sslKey)
                } else {
                    let pem = try clientIdentity.privateKey.serializeAsPEM().pemString
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem))
                }
            } catch {
                throw AgentError(.invalidArgument, "the client private key cannot be loaded for TLS")
            }
        }
        let context: NIOSSLContext
        let probeContext: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
            probeContext = try NIOSSLContext(configuration: probeTLS)
        } catch {
            throw AgentError(.invalidArgument, "the TLS configuration cannot be built: \(Self.printable("\(error)"))")
        }

        let trust = ServerTrust(
            roots: trustRoots, host: host, holding: clientIdentity?.certificateChain ?? [])
        func transport(_ context: NIOSSLContext) -> HTTPSTransport {
            HTTPSTransport(
                host: host, port: port, sslContext: context, trust: trust,
                connectTimeout: Self.timeAmount(connectTimeout), requestTimeout: Self.timeAmount(requestTimeout),
                maximumBodyBytes: Self.maximumBodyBytes)
        }

        self.baseURL = trimmed
        self.label = label
        self.host = host
        self.pathPrefix = pathPrefix
        self.transport = transport(context)
        self.probeTransport = transport(probeContext)
        self.logger = logger
        self.clock = serverClock ?? ServerClock(local: SystemWallClock())
    }

    /// No device clock before this can be right: the newest `notBefore` of the trust bundle and the client chain.
    public var timeFloor: Date { transport.trust.timeFloor }

    /// The `Date` header of the most recent response, if it had a readable one.
    public var lastServerDate: Date? {
        serverDate.withLock { $0 }
    }

    /// The `DevID-Time` header of the most recent response that had a readable one: the server's clock.
    public var lastServerTime: Date? {
        serverTime.withLock { $0 }
    }

    /// Kept for callers: every connection closes with its response, so there is nothing left to shut down.
    public func shutdown() async throws {}

    // MARK: - EST operations

    /// `GET /cacerts` (RFC 7030 §4.1): the CA certificates, in the order the server sent them.
    public func cacerts() async throws -> [Certificate] {
        var connection: HTTPSTransport.Connection?
        return try Self.caCertificates(
            try await send(.GET, target: target("cacerts"), operation: "cacerts", headers: [], body: nil,
            connection: &connection, keepOpen: false))
    }

    /// `GET /cacerts`, then `POST /simpleenroll` with what `prepare` makes in between (the new key and its CSR), both
    /// on one TLS connection: the server makes one handshake for the enrollment instead of two. The order is kept:
    /// nothing is prepared (no key made in a token) before the server has proved itself and answered `/cacerts`.
    /// If the server closed the connection in between (its idle timeout), the enrollment goes on a new one.
    ///
    /// - Returns: the CA certificates and the issued certificate.
    /// - Throws: as ``cacerts()`` and ``simpleEnroll(csrDER:authorization:)``, and whatever `prepare` throws.
    public func cacertsThenSimpleEnroll(
        prepare: () async throws -> (csrDER: [UInt8], authorization: EnrollAuthorization)
    ) async throws -> (caCertificates: [Certificate], certificate: Certificate) {
        try await cacertsThen("simpleenroll") {
            let (csrDER, authorization) = try await prepare()
            return (csrDER, authorization.headerValue)
        }
    }

    /// `GET /cacerts`, then `POST /simplereenroll` with the CSR `prepare` makes, on one TLS connection (see
    /// ``cacertsThenSimpleEnroll(prepare:)``): a renewal costs the server one handshake.
    public func cacertsThenSimpleReenroll(
        prepare: () async throws -> [UInt8]
    ) async throws -> (caCertificates: [Certificate], certificate: Certificate) {
        try await cacertsThen("simplereenroll") { (try await prepare(), nil) }
    }

    /// `GET /cacerts`, then the enrollment `operation` with the CSR (and `Authorization` value) `prepare` makes, on
    /// the connection `/cacerts` kept open (a new one if it had closed); the connection is closed after.
    private func cacertsThen(
        _ operation: String, prepare: () async throws -> (csrDER: [UInt8], authorization: String?)
    ) async throws -> (caCertificates: [Certificate], certificate: Certificate) {
        var connection: HTTPSTransport.Connection?
        defer { connection?.close() }
        let caCertificates = try Self.caCertificates(
            try await send(.GET, target: target("cacerts"), operation: "cacerts", headers: [], body: nil,
            connection: &connection, keepOpen: true))
        let (csrDER, authorization) = try await prepare()
        let certificate = try await enroll(
            operation, csrDER: csrDER, authorization: authorization, connection: &connection)
        return (caCertificates, certificate)
    }

    /// How many TLS connections this client has opened (time probes included), for tests and logs.
    public var connectionsOpened: Int { opened.load(ordering: .relaxed) }

    private static func caCertificates(_ reply: Reply) throws -> [Certificate] {
        let certificates = try Self.certsOnly(reply, operation: "cacerts")
        guard !certificates.isEmpty else {
            throw AgentError(.badResponse, "cacerts response holds no certificate", status: reply.status)
        }
        return certificates
    }

    /// `POST /simpleenroll` (RFC 7030 §4.2.1) with a DER PKCS#10 CSR; returns the issued certificate.
    ///
    /// - Throws: ``AgentError``: `.pending` with `retryAfter` on 202, `.refused(status:)` with the server's reason on
    ///   an error status, `.badResponse` when a 200 is not a certs-only CMS holding a certificate.
    public func simpleEnroll(csrDER: [UInt8], authorization: EnrollAuthorization) async throws -> Certificate {
        try await enroll("simpleenroll", csrDER: csrDER, authorization: authorization.headerValue)
    }

    /// `POST /simplereenroll` (RFC 7030 §4.2.2), authenticated by the client certificate (the current LDevID).
    public func simpleReenroll(csrDER: [UInt8]) async throws -> Certificate {
        try await enroll("simplereenroll", csrDER: csrDER, authorization: nil)
    }

    /// `GET /v1/device/status`, authenticated by the client certificate: DevID's check-in. The first successful one
    /// with a new credential confirms it on the server.
    ///
    /// - Throws: ``AgentError``: `.refused(status:)` with the server's one-line reason (403 "credential is revoked",
    ///   "credential superseded and its overlap has ended", "credential has expired", "device is suspended", …),
    ///   `.tlsFailure` when the handshake refused the certificate, `.badResponse` for a 200 that is not the JSON.
    public func deviceStatus() async throws -> DeviceStatus {
        let reply = try await send(
            .GET, target: pathPrefix + "/v1/device/status", operation: "status", headers: [], body: nil)
        let contentType = reply.headers.first(name: "Content-Type") ?? ""
        guard contentType.lowercased().hasPrefix("application/json") else {
            throw AgentError(.badResponse, "status response is not application/json", status: reply.status)
        }
        do {
            return try DeviceStatus.decoder.decode(DeviceStatus.self, from: Data(reply.body))
        } catch {
            throw AgentError(.badResponse, "status response does not parse", status: reply.status)
        }
    }

    private func enroll(_ operation: String, csrDER: [UInt8], authorization: String?) async throws -> Certificate {
        var connection: HTTPSTransport.Connection?
        return try await enroll(operation, csrDER: csrDER, authorization: authorization, connection: &connection)
    }

    private func enroll(
        _ operation: String, csrDER: [UInt8], authorization: String?, connection: inout HTTPSTransport.Connection?
    ) async throws -> Certificate {
        var headers = [("Content-Type", "application/pkcs10"), ("Content-Transfer-Encoding", "base64")]
        if let authorization { headers.append(("Authorization", authorization)) }
        let reply = try await send(
            .POST, target: target(operation), operation: operation, headers: headers, body: ESTBase64.encode(csrDER),
            connection: &connection, keepOpen: false)
        let certificates = try Self.certsOnly(reply, operation: operation)
        // The issued certificate is the one for the CSR's key; a server may add CA certificates, and DER sorts them.
        let requestedKey = try? CertificateSigningRequest(derEncoded: csrDER).publicKey
        guard
            let certificate = certificates.first(where: { $0.publicKey == requestedKey })
                ?? certificates.first(where: { !$0.isCertificateAuthority }) ?? certificates.first
        else {
            throw AgentError(.badResponse, "\(operation) response holds no certificate", status: reply.status)
        }
        return certificate
    }

    // MARK: - HTTP

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// The request target of an EST operation: path prefix, `/.well-known/est/`, optional label, operation.
    private func target(_ operation: String) -> String {
        pathPrefix + "/.well-known/est/" + (label.map { "\($0)/" } ?? "") + operation
    }

    private func send(
        _ method: HTTPMethod, target: String, operation: String, headers: [(String, String)], body: String?
    ) async throws -> Reply {
        var connection: HTTPSTransport.Connection?
        return try await send(
            method, target: target, operation: operation, headers: headers, body: body, connection: &connection,
            keepOpen: false)
    }

    /// Sends one request; returns a 200 reply, throws ``AgentError`` for any other outcome. On `connection` when it
    /// holds one (else, or when it had closed, on a new connection), which is left holding the connection when
    /// `keepOpen` and the server kept it open, else nil.
    private func send(
        _ method: HTTPMethod, target: String, operation: String, headers: [(String, String)], body: String?,
        connection: inout HTTPSTransport.Connection?, keepOpen: Bool
    ) async throws -> Reply {
        let request = HTTPSTransport.Request(
            method: method, target: target, headers: headers, body: body.map { Array($0.utf8) })
        let reply: Reply
        do {
            let kept = connection
            connection = nil  // a failed exchange has closed it
            let sent: (response: HTTPSTransport.Response, connection: HTTPSTransport.Connection?)
            if let kept, let reused = try await send(request, on: kept, keepOpen: keepOpen, operation: operation) {
                sent = reused
            } else {
                try await probeTimeIfClockIsWrong(before: operation)
                opened.add(1, ordering: .relaxed)
                sent = try await transport.send(request, mode: .strict(at: clock.now()), keepOpen: keepOpen)
            }
            connection = sent.connection
            let response = sent.response
            record(response.headers)
            reply = Reply(status: response.status, headers: response.headers, body: response.body)
        } catch {
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            if error is AgentError { throw error }
            throw Self.transportError(error, host: host, operation: operation)
        }
        logger.debug(
            "EST response", metadata: ["operation": "\(operation)", "status": "\(reply.status)", "host": "\(host)"])

        switch reply.status {
        case 200:
            return reply
        case 202:
            throw AgentError(
                .pending, "\(operation): the server will decide later", status: 202,
                serverReason: Self.textReason(reply),
                serverCode: reply.headers.first(name: "DevID-Refusal").flatMap(RefusalCode.init(rawValue:)),
                retryAfter: HTTPDate.retryAfterSeconds(
                    reply.headers.first(name: "Retry-After"), serverDate: lastServerDate))
        default:
            throw AgentError(
                .refused(status: reply.status), "\(operation) refused with HTTP \(reply.status)", status: reply.status,
                serverReason: Self.textReason(reply),
                serverCode: reply.headers.first(name: "DevID-Refusal").flatMap(RefusalCode.init(rawValue:)),
                retryAfter: HTTPDate.retryAfterSeconds(
                    reply.headers.first(name: "Retry-After"), serverDate: lastServerDate))
        }
    }

    /// `request` on a connection an earlier request kept open; nil when that connection had closed before anything
    /// was written (the server's idle timeout), so the request can go on a new one.
    private func send(
        _ request: HTTPSTransport.Request, on kept: HTTPSTransport.Connection, keepOpen: Bool, operation: String
    ) async throws -> (response: HTTPSTransport.Response, connection: HTTPSTransport.Connection?)? {
        do {
            return try await transport.send(request, on: kept, keepOpen: keepOpen)
        } catch HTTPSTransport.Failure.closedBeforeRequest {
            logger.debug("the kept connection had closed; a new one", metadata: ["operation": "\(operation)"])
            return nil
        }
    }

    /// Keeps a response's `Date` and `DevID-Time` and tells the clock the server's time.
    private func record(_ headers: HTTPHeaders) {
        let date = headers.first(name: "Date").flatMap(HTTPDate.parse)
        if let date { serverDate.withLock { $0 = date } }
        if let stamp = headers.first(name: "DevID-Time").flatMap(HTTPDate.parseRFC3339) {
            serverTime.withLock { $0 = stamp.date }
            clock.observe(serverTime: stamp.date, wholeSeconds: stamp.wholeSeconds)
        } else if let date {
            // A server without DevID-Time: its HTTP Date is the best there is.
            clock.observe(serverTime: date, wholeSeconds: true)
        }
    }

    /// The time probe (see the type's documentation): only when the corrected time is before the time floor, i.e.
    /// the device clock is certainly wrong (an RTC reset to 1970). One `GET /cacerts` without client certificate,
    /// credentials or body; its chain checked at `max(floor, leaf.notBefore)`; only the server's time is kept.
    ///
    /// - Throws: ``AgentError`` `.tlsFailure` (or `.connectionFailed`) when the probe fails or the server's time is
    ///   still before the floor: the agent then has no time it could check the server's certificate at.
    private func probeTimeIfClockIsWrong(before operation: String) async throws {
        let floor = transport.trust.timeFloor
        let before = clock.now()
        guard before < floor else { return }
        logger.debug(
            "device clock is before the newest certificate it holds: probing the server's time",
            metadata: [
                "operation": "\(operation)", "host": "\(host)", "corrected_time": "\(ServerTrust.format(before))",
                "time_floor": "\(ServerTrust.format(floor))",
            ])
        let probe = HTTPSTransport.Request(method: .GET, target: target("cacerts"), headers: [], body: nil)
        do {
            opened.add(1, ordering: .relaxed)
            let response = try await probeTransport.send(probe, mode: .timeProbe)
            record(response.headers)
        } catch {
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            throw Self.transportError(error, host: host, operation: "time probe before \(operation)")
        }
        let after = clock.now()
        guard after >= floor else {
            throw AgentError(
                .tlsFailure,
                "TLS with \(host) refused (\(operation)): the device clock (\(ServerTrust.format(after))) is before "
                    + "the newest certificate it holds (\(ServerTrust.format(floor))) and the server's time did not "
                    + "correct it")
        }
    }

    /// A failure below HTTP as an ``AgentError``.
    static func transportError(_ error: any Error, host: String, operation: String) -> AgentError {
        guard let failure = error as? HTTPSTransport.Failure else {
            return AgentError(
                .connectionFailed, "could not reach \(host) (\(operation)): \(AgentError.oneLine("\(error)"))")
        }
        switch failure {
        case .connect(let underlying):
            return AgentError(.connectionFailed, "could not reach \(host) (\(operation)): \(connectReason(underlying))")
        case .handshakeTimedOut:
            return AgentError(.connectionFailed, "TLS handshake with \(host) timed out (\(operation))")
        case .requestTimedOut:
            return AgentError(.connectionFailed, "\(operation) request to \(host) timed out")
        case .untrustedServer(let reason):
            return AgentError(.tlsFailure, "TLS with \(host) failed (\(operation)): \(reason)")
        case .tls(let underlying):
            let description = String(describing: underlying)
            return AgentError(
                .tlsFailure, "TLS with \(host) failed (\(operation)): \(tlsReason(description))",
                certificateAlert: isCertificateAlert(description))
        case .closed(let underlying):
            return AgentError(
                .connectionFailed,
                "the connection to \(host) broke before a response (\(operation)): "
                    + AgentError.oneLine("\(underlying)"))
        case .closedBeforeRequest:
            return AgentError(.connectionFailed, "the connection to \(host) closed before the request (\(operation))")
        case .bodyTooLarge(let status):
            return AgentError(
                .badResponse, "\(operation) response body is over \(maximumBodyBytes) bytes", status: status)
        }
    }

    /// Why a connection could not be made, in the words of the system ("Connection refused", "No route to host"),
    /// not NIO's nested error types: for a connection error, the last address tried and its errno.
    static func connectReason(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError, let last = connection.connectionErrors.last {
            let target = last.target
            let address = target.ipAddress.map { target.protocol == .inet6 ? "[\($0)]" : $0 } ?? "?"
            return connectReason(last.error) + " (\(address):\(target.port ?? 0))"
        }
        if let io = error as? IOError {
            return String(cString: strerror(io.errnoCode))
        }
        return AgentError.oneLine("\(error)")
    }

    /// The certificates of a certs-only CMS response (`application/pkcs7-mime`, base64 body).
    static func certsOnly(_ reply: Reply, operation: String) throws(AgentError) -> [Certificate] {
        let contentType = reply.headers.first(name: "Content-Type") ?? ""
        guard contentType.lowercased().hasPrefix("application/pkcs7-mime") else {
            let shown = contentType.isEmpty ? "untyped" : printable(contentType)
            throw AgentError(
                .badResponse, "\(operation) response is \(shown), not application/pkcs7-mime", status: reply.status)
        }
        guard let der = ESTBase64.decode(reply.body) else {
            throw AgentError(.badResponse, "\(operation) response body is not base64", status: reply.status)
        }
        do {
            return try CertsOnlyCMS(derEncoded: der).certificates
        } catch {
            throw AgentError(.badResponse, "\(operation) response: \(error.reason)", status: reply.status)
        }
    }

    /// The body as a reason, when the server sent `text/plain`.
    private static func textReason(_ reply: Reply) -> String? {
        guard let type = reply.headers.first(name: "Content-Type"), type.lowercased().hasPrefix("text/plain"),
            !reply.body.isEmpty
        else { return nil }
        return String(decoding: reply.body.prefix(1024), as: UTF8.self)
    }

    /// A readable reason from a BoringSSL error stack, whose description carries reason names such as
    /// `...:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at <source path>`.
    /// BoringSSL's reasons in an error's description (`SSLV3_ALERT_CERTIFICATE_UNKNOWN`, ...).
    static func boringSSLReasons(_ description: String) -> [String] {
        var reasons: [String] = []
        var rest = Substring(description)
        while let marker = rest.range(of: "OPENSSL_internal:") {
            let name = rest[marker.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            if !name.isEmpty, !reasons.contains(String(name)) { reasons.append(String(name)) }
            rest = rest[marker.upperBound...]
        }
        return reasons
    }

    /// Whether the peer ended the handshake with an alert about the client's certificate (BoringSSL reports a
    /// received alert as `SSLV3_ALERT_<NAME>`, `TLSV1_ALERT_<NAME>` or `TLSV13_ALERT_<NAME>`): `bad_certificate`,
    /// `unsupported_certificate`, `certificate_revoked`, `certificate_expired`, `certificate_unknown`,
    /// `certificate_required`, `unknown_ca`, `access_denied`. DevID's server sends `certificate_unknown`.
    static func isCertificateAlert(_ description: String) -> Bool {
        boringSSLReasons(description).contains { reason in
            guard reason.contains("_ALERT_") else { return false }
            return reason.contains("CERTIFICATE") || reason.hasSuffix("UNKNOWN_CA") || reason.hasSuffix("ACCESS_DENIED")
        }
    }

    static func tlsReason(_ description: String) -> String {
        let reasons = boringSSLReasons(description)
        if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server's certificate does not chain to the trust bundle (CERTIFICATE_VERIFY_FAILED)"
        }
        if let alert = reasons.first(where: { $0.contains("ALERT") }) {
            return "the server ended the handshake (\(alert)); it may not trust the client certificate"
        }
        if !reasons.isEmpty { return reasons.joined(separator: ", ") }
        return String(AgentError.oneLine(description).prefix(120))
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    static func printable(_ text: String) -> String {
        String(AgentError.oneLine(text).prefix(80))
    }
}
