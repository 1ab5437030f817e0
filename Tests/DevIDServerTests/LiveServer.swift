import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDTesting
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle
import SwiftASN1
import X509

/// A real `DevIDServerApp` on loopback ephemeral ports, in a temporary data directory, on a manual clock.
final class LiveServer: Sendable {
    let directory: TemporaryDirectory
    let configuration: ServerConfiguration
    let clock: ManualWallClock
    let app: DevIDServerApp
    let group: ServiceGroup
    let runTask: Task<Void, any Error>
    let estPort: Int
    let opsPort: Int

    var state: ServerState { app.state }
    var estURL: String { "https://127.0.0.1:\(estPort)" }
    var opsURL: String { "http://127.0.0.1:\(opsPort)" }
    var adminToken: String { app.firstStart.adminToken ?? "" }

    init(clock: ManualWallClock = ManualWallClock(Date()), configure: (inout ServerConfiguration) -> Void = { _ in })
        async throws
    {
        directory = try TemporaryDirectory(prefix: "devid-server")
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.caPassphrase = "server-test-passphrase"
        configure(&configuration)
        self.configuration = configuration
        self.clock = clock
        var logger = Logger(label: "devid-test")
        logger.logLevel = .warning
        app = try await DevIDServerApp(configuration: configuration, clock: clock, logger: logger)
        group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let group = self.group
        runTask = Task { try await group.run() }
        let ports = await app.waitUntilRunning()
        estPort = ports.est
        opsPort = ports.ops
    }

    /// Waits until the issuing CAs' first CRLs are published (they are signed just after the listeners come up; until
    /// then the CRL routes answer 503). Fails after `limit`.
    func waitForFirstCRLs(limit: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + limit
        while await state.revocation.brokerCRLs().isEmpty {
            guard ContinuousClock.now < deadline else {
                throw NotPublished(description: "the first CRLs were not published within \(limit)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    struct NotPublished: Error, CustomStringConvertible {
        let description: String
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await runTask.value
        directory.remove()
    }

    /// An HTTP client that trusts the DevID root and optionally presents a client certificate.
    func client(
        certificate: [Certificate]? = nil, key: Certificate.PrivateKey? = nil,
        minimumTLS: TLSVersion = .tlsv12, maximumTLS: TLSVersion? = nil
    ) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: state.hierarchy.root.derBytes, format: .der)])
        tls.minimumTLSVersion = minimumTLS
        tls.maximumTLSVersion = maximumTLS
        if let certificate, let key {
            tls.certificateChain = try certificate.map { .certificate(try NIOSSLCertificate(bytes: $0.derBytes, format: .der)) }
            tls.privateKey = .privateKey(
                try NIOSSLPrivateKey(bytes: Array(try key.serializeAsPEM().pemString.utf8), format: .pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}

/// One request with any client; the body as text.
struct Reply {
    let status: Int
    let headers: [(String, String)]
    let body: String

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

extension HTTPClient {
    func send(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: String? = nil
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: String(buffer: bytes))
    }
}

/// Runs `body` with a client and always shuts it down.
func withClient<T>(_ client: HTTPClient, _ body: (HTTPClient) async throws -> T) async throws -> T {
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}
