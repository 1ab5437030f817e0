import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import NIOSSL
import SwiftASN1
import Testing
import X509

/// The EST listener over real TLS on loopback: each kind of client certificate behaves as designed.
@Suite("mTLS listener", .serialized)
struct MTLSListenerTests {
    @Test("no client certificate: the handshake succeeds and the request is unauthenticated")
    func withoutClientCertificate() async throws {
        let server = try await LiveServer()
        let (health, peer) = try await withClient(try server.client()) { client in
            (try await client.send("GET", server.estURL + "/healthz"),
             try await client.send("GET", server.estURL + "/v1/tls/peer"))
        }
        #expect(health.status == 200)
        #expect(peer.status == 401)
        #expect(peer.body.contains("no client certificate"))
        #expect(peer.header("WWW-Authenticate") != nil)
        try await server.stop()
    }

    @Test("a valid LDevID authenticates as its device, over TLS 1.2 and 1.3", arguments: [TLSVersion.tlsv12, .tlsv13])
    func validLDevID(version: TLSVersion) async throws {
        let server = try await LiveServer()
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let cert = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("sensor-7"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let reply = try await withClient(
            try server.client(certificate: [cert], key: key, minimumTLS: version, maximumTLS: version)
        ) { try await $0.send("GET", server.estURL + "/v1/tls/peer") }
        #expect(reply.status == 200)
        #expect(reply.body.contains("\"kind\":\"ldevid\""))
        #expect(reply.body.contains("\"device\":\"sensor-7\""))
        #expect(reply.body.contains("\"tenant\":\"acme\""))
        #expect(reply.header("Date") != nil)
        try await server.stop()
    }

    @Test("a valid IDevID authenticates as its hardware serial")
    func validIDevID() async throws {
        let server = try await LiveServer()
        let manufacturer = try #require(server.state.hierarchy.manufacturer)
        let key = try KeyMaterial.generate(.p256)
        let cert = try manufacturer.issueIDevID(hardwareSerial: "HW-42", publicKey: key.publicKey, now: server.clock.now())
        let reply = try await withClient(try server.client(certificate: [cert], key: key)) {
            try await $0.send("GET", server.estURL + "/v1/tls/peer")
        }
        #expect(reply.status == 200)
        #expect(reply.body.contains("\"kind\":\"idevid\""))
        #expect(reply.body.contains("\"hardwareSerial\":\"HW-42\""))
        try await server.stop()
    }

    @Test("a certificate from an untrusted CA fails the handshake, and the refusal is audited")
    func untrustedCertificate() async throws {
        let server = try await LiveServer()
        let stranger = try TestChain(clock: server.clock)
        defer { stranger.directory.remove() }
        let (key, cert) = try stranger.ldevid(device: "intruder")
        await #expect(throws: (any Error).self) {
            try await withClient(try server.client(certificate: [cert], key: key)) {
                try await $0.send("GET", server.estURL + "/v1/tls/peer")
            }
        }
        let denials = try await server.state.store.auditEvents(AuditFilter(action: "tls.client_auth", outcome: .denied))
        #expect(denials.first?.reason == "certificate does not chain to a trusted CA")
        #expect(denials.first?.serial == cert.devidSerial)
        try await server.stop()
    }

    @Test("an LDevID expired at the injected time: within grace it only reaches re-enrollment; beyond, the handshake fails")
    func expiredAtInjectedTime() async throws {
        let server = try await LiveServer()
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let cert = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("old-1"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let before = try await withClient(try server.client(certificate: [cert], key: key)) {
            try await $0.send("GET", server.estURL + "/v1/tls/peer")
        }
        #expect(before.status == 200)

        server.clock.advance(by: 31 * 86_400)  // the LDevID lives 30 days; grace is 30 more
        let withinGrace = try await withClient(try server.client(certificate: [cert], key: key)) {
            try await $0.send("GET", server.estURL + "/v1/tls/peer")
        }
        #expect(withinGrace.status == 403)
        #expect(withinGrace.body.contains("certificate has expired"))

        server.clock.advance(by: 30 * 86_400)
        await #expect(throws: (any Error).self) {
            try await withClient(try server.client(certificate: [cert], key: key)) {
                try await $0.send("GET", server.estURL + "/v1/tls/peer")
            }
        }
        let denials = try await server.state.store.auditEvents(AuditFilter(action: "tls.client_auth", outcome: .denied))
        #expect(denials.first?.reason == "certificate has expired")
        try await server.stop()
    }

    @Test("curl and openssl s_client, as third-party clients, complete the handshake with and without a certificate")
    func thirdPartyClients() async throws {
        let server = try await LiveServer()
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let cert = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("curl-1"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let dir = server.directory
        let certFile = try dir.write("curl-1.crt", cert.pemString)
        let keyFile = try dir.write("curl-1.key", try key.serializeAsPEM().pemString)
        let root = CALayout(dataDirectory: server.configuration.dataDirectory).rootCertificate

        let withCert = try await ExternalTool.runAsync([
            "curl", "-sS", "--cacert", root, "--cert", certFile, "--key", keyFile, server.estURL + "/v1/tls/peer",
        ])
        #expect(withCert.succeeded, "\(withCert.stderr)")
        #expect(withCert.stdout.contains("\"device\":\"curl-1\""))

        let tls12 = try await ExternalTool.runAsync([
            "curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--cacert", root, "--cert", certFile, "--key", keyFile,
            server.estURL + "/v1/tls/peer",
        ])
        #expect(tls12.stdout.contains("\"device\":\"curl-1\""), "\(tls12.stderr)")

        let anonymous = try await ExternalTool.runAsync([
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", root, server.estURL + "/v1/tls/peer",
        ])
        #expect(anonymous.stdout == "401")

        let sClient = try await ExternalTool.runAsync(
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(server.estPort)", "-servername", "localhost",
                "-CAfile", root, "-verify_return_error", "-brief",
            ], stdin: [])
        #expect(sClient.stderr.contains("Verification: OK") || sClient.stdout.contains("Verification: OK"),
                "\(sClient.stderr)")
        try await server.stop()
    }
}
