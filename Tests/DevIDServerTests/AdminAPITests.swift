import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import Logging
import ServiceLifecycle
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing

@Suite("Admin API authentication", .serialized)
struct AdminAPITests {
    @Test("no token → 401 with a Bearer challenge, audited; nothing is created")
    func missingToken() async throws {
        let server = try await LiveServer()
        let reply = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.opsURL + "/v1/admin/tenants", headers: [("Content-Type", "application/json")],
                body: #"{"id":"acme"}"#)
        }
        #expect(reply.status == 401)
        #expect(reply.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(reply.body.contains("missing admin token"))
        #expect(try await server.state.store.tenants().isEmpty)
        let denial = try await server.state.store.auditEvents(AuditFilter(action: "admin.auth", outcome: .denied))
        #expect(denial.first?.reason == "missing admin token: POST /v1/admin/tenants")
        try await server.stop()
    }

    @Test("wrong token → 401, audited, and the wrong token never appears in the audit trail", arguments: [
        "Bearer devid_adm_wrong_token", "Bearer ", "Basic YWRtaW46YWRtaW4=", "bearer",
    ])
    func wrongToken(header: String) async throws {
        let server = try await LiveServer()
        let reply = try await withClient(try server.client()) {
            try await $0.send("GET", server.opsURL + "/v1/admin/ca", headers: [("Authorization", header)])
        }
        #expect(reply.status == 401)
        let denials = try await server.state.store.auditEvents(AuditFilter(action: "admin.auth", outcome: .denied))
        #expect(denials.count == 1)
        #expect(!denials.contains { $0.reason.contains("wrong_token") })
        try await server.stop()
    }

    @Test("right token → 200, the request is attributed to the token id")
    func rightToken() async throws {
        let server = try await LiveServer()
        let (ca, created, duplicate, devices) = try await withClient(try server.client()) { client in
            let auth = [("Authorization", "Bearer \(server.adminToken)")]
            let json = auth + [("Content-Type", "application/json")]
            return (
                try await client.send("GET", server.opsURL + "/v1/admin/ca", headers: auth),
                try await client.send("POST", server.opsURL + "/v1/admin/tenants", headers: json, body: #"{"id":"acme"}"#),
                try await client.send("POST", server.opsURL + "/v1/admin/tenants", headers: json, body: #"{"id":"acme"}"#),
                try await client.send("GET", server.opsURL + "/v1/admin/devices?state=bogus", headers: auth)
            )
        }
        #expect(ca.status == 200)
        #expect(ca.body.contains("\"role\":\"root\""))
        #expect(ca.body.contains(server.state.hierarchy.root.sha256Fingerprint))
        #expect(created.status == 201)
        #expect(duplicate.status == 409)
        #expect(devices.status == 400)
        #expect(try await server.state.store.tenants().map(\.id.rawValue) == ["acme"])
        let grants = try await server.state.store.auditEvents(AuditFilter(action: "tenant.create", outcome: .success))
        #expect(grants.count == 1)
        #expect(grants.first?.actor.hasPrefix("admin:") == true)
        #expect(try await server.state.store.verifyAuditChain() == nil)
        try await server.stop()
    }

    @Test("the admin token is stored only as a hash, and its local copy is 0600")
    func tokenStoredHashed() async throws {
        let server = try await LiveServer()
        let stored = try await server.state.store.adminTokens()
        #expect(stored.count == 1)
        #expect(stored[0].secretHash != server.adminToken)
        #expect(stored[0].secretHash == AdminTokens.hash(server.adminToken))
        let path = server.configuration.devAdminTokenPath
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        try await server.stop()
    }

    @Test("a second start reuses the hierarchy and creates no new token; shutdown is clean")
    func restart() async throws {
        let first = try await LiveServer()
        let root = first.state.hierarchy.root
        await first.group.triggerGracefulShutdown()
        try await first.runTask.value

        let second = try await DevIDServerApp(
            configuration: first.configuration, clock: first.clock, logger: .init(label: "restart"))
        #expect(second.firstStart.isEmpty)
        #expect(second.state.hierarchy.root == root)
        #expect(try await second.state.store.adminTokens().count == 1)
        first.directory.remove()
    }
}
