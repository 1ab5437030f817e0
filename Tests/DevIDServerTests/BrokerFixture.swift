import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

extension ESTFixture {
    /// A fixture whose server is configured by `configure` (for broker sync, short rotation periods...).
    init(
        policy: TenantPolicy = TenantPolicy(), clock: ManualWallClock = ManualWallClock(Date()),
        configure: (inout ServerConfiguration) -> Void
    ) async throws {
        server = try await LiveServer(clock: clock, configure: configure)
        try await server.state.store.createTenant(
            Tenant(id: tenant, displayName: "Acme", createdAt: server.clock.now(), policy: policy), audit: nil)
    }
}

/// An enrolled device as a broker client sees it: its id, its LDevID and key, and the same as PEM files.
struct BrokerDevice {
    let id: String
    var identity: (key: Certificate.PrivateKey, certificate: Certificate)
    var files: MQTTClientCredentials

    static func write(
        _ id: String, _ identity: (key: Certificate.PrivateKey, certificate: Certificate), caFile: String,
        directory: TemporaryDirectory, suffix: String = ""
    ) throws -> BrokerDevice {
        let certFile = try directory.write("\(id)\(suffix).pem", PEM.bundle([identity.certificate]))
        let keyFile = directory.file("\(id)\(suffix).key")
        try SecureFile.write(Array(try identity.key.serializeAsPEM().pemString.utf8), to: keyFile, mode: 0o600)
        return BrokerDevice(
            id: id, identity: identity, files: MQTTClientCredentials(caFile: caFile, certFile: certFile, keyFile: keyFile))
    }
}

/// The topic policy the broker tests give both tenants: the default, plus what a backend needs to observe
/// (every device's telemetry) and to broadcast, so devices can also play those parts.
let brokerTestPolicy = """
    {"rules": [
      {"action": "publish", "topic": "tenants/{tenant}/devices/{device}/telemetry/#"},
      {"action": "subscribe", "topic": "tenants/{tenant}/devices/{device}/commands/#"},
      {"action": "subscribe", "topic": "tenants/{tenant}/broadcast"},
      {"action": "subscribe", "topic": "tenants/{tenant}/devices/+/telemetry/#"},
      {"action": "publish", "topic": "tenants/{tenant}/broadcast"}
    ]}
    """

extension ESTFixture {
    func setBrokerTestPolicy(_ tenant: TenantID) async throws {
        let reply = try await admin("PUT", "/v1/admin/tenants/\(tenant.rawValue)/topic-policy", body: brokerTestPolicy)
        #expect(reply.status == 200, "\(reply.body)")
    }

    /// Enrolls `device` in `tenant` with a claim token.
    func enroll(_ device: String, tenant: TenantID) async throws -> (key: Certificate.PrivateKey, certificate: Certificate) {
        let token = try await token(device: device, tenant: tenant)
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try server.client()) {
            try await post(
                "simpleenroll", csr: try ESTFixture.csr(key: key), client: $0,
                headers: [("Authorization", "Bearer \(token.secret)")])
        }
        return (key, try ESTFixture.certificate(reply))
    }

    func createTenant(_ id: String) async throws -> TenantID {
        let tenant = TenantID(rawValue: id)!
        try await store.createTenant(
            Tenant(id: tenant, displayName: id, createdAt: server.clock.now(), policy: TenantPolicy()), audit: nil)
        return tenant
    }
}
