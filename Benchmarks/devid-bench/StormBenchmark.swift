import ArgumentParser
import DevIDAgent
import DevIDCore
import DevIDPKI
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

/// `devid-bench storm`: thousands of simulated devices against a running `devid serve`, from this separate process.
///
/// `storm prepare` enrolls a minted lot (`devid factory mint`, registered with `devid device import`) over EST with
/// each device's IDevID and keeps every LDevID in one state file. `storm run` then makes all of them check in at
/// once (`GET /v1/device/status` with their LDevID) and a share of them re-enroll (`simplereenroll`), each retrying
/// exactly as the agent does (``RetryAfter`` from DevIDAgent), while probes time `/healthz`, `/readyz`, OCSP and an
/// admin API read. BENCHMARKS.md ("Reconnect storm") and docs/operations.md show runs.
struct StormBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "Reconnect storm against a running devid serve: prepare (enroll a lot), then run (all check in).",
        subcommands: [StormPrepare.self, StormRun.self]
    )
}

/// Where the server is and how the simulated devices reach it.
struct StormServerOptions: ParsableArguments {
    @Option(name: .long, help: "The EST/mTLS listener, e.g. https://127.0.0.1:8443 (server.json's estURL).")
    var server: String

    @Option(name: .long, help: "PEM file of the DevID root certificate (DATA/ca/root.crt).")
    var trustBundle: String

    @Option(
        name: .long,
        help: "Loopback source addresses the devices connect from (127.0.0.2, 127.0.0.3, ...); 0 = the default.")
    var sources = 0

    @Option(name: .long, help: "Seconds of the agent's backoff base (the agent's default is 30).")
    var backoffBase: Double = 1

    @Option(name: .long, help: "Seconds of the agent's backoff cap.")
    var backoffCap: Double = 60

    func validate() throws {
        guard StormEndpoint(server) != nil else { throw ValidationError("--server must be https://HOST:PORT") }
        guard (0...250).contains(sources) else { throw ValidationError("--sources must be 0-250") }
        guard backoffBase > 0, backoffCap >= backoffBase else {
            throw ValidationError("--backoff-base must be positive and --backoff-cap at least as large")
        }
    }

    var endpoint: StormEndpoint { StormEndpoint(server)! }
    var backoff: Backoff { Backoff(base: backoffBase, cap: backoffCap) }

    /// The source address of device `index`, nil for the system's choice.
    func source(_ index: Int) throws -> SocketAddress? {
        guard sources > 0 else { return nil }
        return try SocketAddress(ipAddress: "127.0.0.\(2 + index % sources)", port: 0)
    }

    func root() throws -> NIOSSLCertificate {
        guard let root = try NIOSSLCertificate.fromPEMFile(trustBundle).first else {
            throw BenchError("\(trustBundle) holds no certificate")
        }
        return root
    }
}

/// `https://host:port` or `http://host:port`.
struct StormEndpoint: Sendable {
    var host: String
    var port: Int

    init?(_ url: String) {
        guard let components = URLComponents(string: url), let host = components.host, let port = components.port,
            components.scheme == "https" || components.scheme == "http"
        else { return nil }
        self.host = host
        self.port = port
    }
}

/// What `storm prepare` leaves for `storm run`: every device's LDevID and key, and the issuing CA (for OCSP).
struct StormState: Codable, Sendable {
    struct DeviceEntry: Codable, Sendable {
        var id: String
        /// LDevID DER, base64.
        var certificate: String
        /// PKCS#8 DER of its key, base64.
        var key: String
    }

    var tenant: String
    /// The CA certificates from `/cacerts`, DER base64.
    var caCertificates: [String]
    var devices: [DeviceEntry]
}

/// The agent's retry loop for one request: send, and on anything but `success`, wait as ``RetryAfter`` says (the
/// server's `Retry-After` as a floor, else the backoff) and try again, until `deadline`.
struct StormRetrier: Sendable {
    struct Refusal: Sendable {
        var status: Int
        var code: String?
        var retryAfter: Int?
    }

    let backoff: Backoff
    let deadline: ContinuousClock.Instant
    let journal: StormJournal

    /// Returns the reply `accept` took, or nil at the deadline.
    func run(
        _ send: @Sendable () async throws -> StormRequest.Reply, accept: (StormRequest.Reply) -> Bool
    ) async -> StormRequest.Reply? {
        var generator = SystemRandomNumberGenerator()
        var failures = 0
        var earliest: ContinuousClock.Instant?
        let clock = ContinuousClock()
        while clock.now < deadline {
            let sent = clock.now
            if let earliest { journal.retried(slack: (sent - earliest).seconds) }
            journal.attempt()
            var retryAfter: Int?
            do {
                let reply = try await send()
                if accept(reply) {
                    journal.answered(reply.status, code: nil)
                    return reply
                }
                retryAfter = RetryAfter.seconds(
                    reply.headers.first(name: "Retry-After"), dateHeader: reply.headers.first(name: "Date"))
                journal.answered(reply.status, code: reply.headers.first(name: "DevID-Refusal"))
                if reply.status == 429 || reply.status == 503 {
                    journal.refused(status: reply.status, retryAfter: retryAfter)
                }
            } catch {
                journal.transportError(error)
            }
            let received = clock.now
            earliest = retryAfter.map { received + .seconds($0) }
            let delay = RetryAfter.delay(
                backoff: backoff, failures: failures, retryAfter: retryAfter, using: &generator)
            failures += 1
            try? await Task.sleep(until: min(received + .milliseconds(Int64(delay * 1_000)), deadline))
        }
        return nil
    }
}

/// Builds a device's TLS context: its certificate chain and key, trusting only the DevID root.
func stormTLSContext(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, root: NIOSSLCertificate) throws
    -> NIOSSLContext
{
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.minimumTLSVersion = .tlsv12
    tls.certificateVerification = .fullVerification
    tls.trustRoots = .certificates([root])
    tls.certificateChain = chain.map { .certificate($0) }
    tls.privateKey = .privateKey(key)
    return try NIOSSLContext(configuration: tls)
}

/// A base64 PKCS#10 for a fresh P-256 key, subject O = tenant, CN = device, and that key's public half.
func stormCSR(device: String, tenant: String) throws -> (body: ByteBuffer, key: Certificate.PrivateKey, pkcs8: [UInt8])
{
    let (key, pkcs8) = try KeyMaterial.generateWithDER(.p256)
    let csr = try CertificateSigningRequest(
        version: .v1,
        subject: try DistinguishedName {
            OrganizationName(tenant)
            CommonName(device)
        },
        privateKey: key, attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
    var serializer = DER.Serializer()
    try serializer.serialize(csr)
    return (ByteBuffer(string: ESTBase64.encode(serializer.serializedBytes)), key, pkcs8)
}

/// The certificate for `publicKey` in an EST certs-only response, or nil.
func stormIssuedCertificate(_ body: ByteBuffer, for publicKey: Certificate.PublicKey) -> Certificate? {
    guard let der = ESTBase64.decode(Array(buffer: body)), let cms = try? CertsOnlyCMS(derEncoded: der) else {
        return nil
    }
    return cms.certificates.first { $0.publicKey == publicKey }
}

/// A small counting semaphore: at most `limit` connections of this process open at once.
actor StormSemaphore {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ limit: Int) { available = limit }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }

    func with<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        do {
            let value = try await body()
            release()
            return value
        } catch {
            release()
            throw error
        }
    }
}
