import AsyncHTTPClient
import Crypto
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import NIOCore
import NIOHTTP1
import SwiftASN1
import Testing
import X509

/// A live server with a tenant, devices enrolled over EST with claim tokens, and a scratch directory where
/// `openssl` and `curl` act as relying parties against `/crl` and `/ocsp`.
struct PublicationFixture {
    let server: LiveServer
    let scratch: TemporaryDirectory
    let tenant = TenantID(rawValue: "acme")!

    static func start(configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> PublicationFixture {
        let server = try await LiveServer(configure: configure)
        try await server.state.store.createTenant(
            Tenant(id: TenantID(rawValue: "acme")!, displayName: "Acme", createdAt: server.clock.now()), audit: nil)
        let fixture = PublicationFixture(server: server, scratch: try TemporaryDirectory(prefix: "devid-publication"))
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        _ = try fixture.scratch.write(
            "chain.pem", PEM.bundle([server.state.hierarchy.issuing.certificate, server.state.hierarchy.root]))
        _ = try fixture.scratch.write("root.pem", PEM.bundle([server.state.hierarchy.root]))
        _ = try fixture.scratch.write("issuing.pem", PEM.bundle([server.state.hierarchy.issuing.certificate]))
        if let manufacturer = server.state.hierarchy.manufacturer {
            _ = try fixture.scratch.write("manufacturer.pem", PEM.bundle([manufacturer.certificate]))
        }
        _ = layout
        // The first CRLs are signed just after the listeners come up; tests start from a published state. A minute:
        // beside every other suite on two cores, a start that takes a second alone once took more than ten.
        try await server.waitForFirstCRLs()
        return fixture
    }

    func stop() async throws {
        scratch.remove()
        try await server.stop()
    }

    var store: any Store { server.state.store }

    /// Enrolls `device` over EST with a single-use claim token; the LDevID is also written to `<device>.pem`.
    func enroll(_ device: String) async throws -> Certificate {
        let generated = ClaimTokens.generate()
        try await store.insertClaimToken(
            ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: tenant, device: DeviceID(rawValue: device)!,
                expiresAt: server.clock.now().addingTimeInterval(3_600), usesRemaining: 1,
                createdAt: server.clock.now()),
            audit: nil)
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer \(generated.secret)")],
                body: ESTBase64.encode(try ESTFixture.csr(commonName: device, key: key)))
        }
        let certificate = try ESTFixture.certificate(reply)
        _ = try scratch.write("\(device).pem", certificate.pemString)
        return certificate
    }

    /// An admin API call with the first-start token.
    func admin(_ method: String, _ path: String, body: String? = nil) async throws -> Reply {
        try await withClient(try server.client()) {
            try await $0.send(
                method, server.opsURL + path,
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: body)
        }
    }

    /// A raw request on the operations listener: status, headers, body bytes.
    func fetch(
        _ path: String, method: String = "GET", headers: [(String, String)] = [], body: [UInt8]? = nil
    ) async throws -> RawReply {
        try await withClient(try server.client()) { client in
            var request = HTTPClientRequest(url: server.opsURL + path)
            request.method = .init(rawValue: method)
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
            let response = try await client.execute(request, timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
            return RawReply(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                body: Array(buffer: bytes))
        }
    }

    /// The served CRL `name`, parsed; fails the test unless it is a 200 `application/pkix-crl`.
    func crl(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> CertificateRevocationList
    {
        let reply = try await fetch("/crl/\(name).crl")
        #expect(reply.status == 200, "\(String(decoding: reply.body, as: UTF8.self))", sourceLocation: sourceLocation)
        #expect(
            reply.header("Content-Type") == "application/pkix-crl",
            sourceLocation: sourceLocation)
        return try CertificateRevocationList(derEncoded: reply.body)
    }

    /// Runs a shell script in the scratch directory.
    func sh(_ script: String) async throws -> ExternalTool.Result {
        try await ExternalTool.runAsync(["bash", "-c", "set -uo pipefail; cd '\(scratch.path)'; \(script)"])
    }

    /// Polls the served CRL `name` until it lists `serial`; returns how long that took, or nil after `limit`.
    func waitUntilListed(
        _ serial: Certificate.SerialNumber, in name: String, limit: Duration = .seconds(3)
    ) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            let reply = try await fetch("/crl/\(name).crl")
            if reply.status == 200, let crl = try? CertificateRevocationList(derEncoded: reply.body),
                crl.entry(for: serial) != nil
            {
                return ContinuousClock.now - start
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

/// One response with its body as bytes.
struct RawReply {
    let status: Int
    let headers: [(String, String)]
    let body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}
