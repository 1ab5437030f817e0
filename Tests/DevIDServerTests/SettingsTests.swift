import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// Live settings kept in the registry (`/v1/admin/settings`): checked as a whole before they are stored, audited,
/// and in effect at the next decision; SIGHUP's reload keeps the previous configuration when the new one is bad.
@Suite("Live settings")
struct SettingsTests {
    static func put(_ server: LiveServer, _ body: String) async throws -> Reply {
        try await withClient(try server.client()) { client in
            try await client.send(
                "PUT", server.opsURL + "/v1/admin/settings",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: body)
        }
    }

    static func value(_ reply: Reply, _ key: String) throws -> (value: String, source: String)? {
        let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]
        let settings = object?["settings"] as? [[String: String]] ?? []
        return settings.first { $0["key"] == key }.map { ($0["value"] ?? "", $0["source"] ?? "") }
    }

    @Test("a lifetime set in the registry applies to the next enrollment, and unset returns to the file's")
    func lifetimeAppliesAtOnce() async throws {
        let server = try await MetricsTests.server()
        let set = try await Self.put(server, #"{"settings":{"ldevid.lifetime.days":14,"limits.device.burst":"40"}}"#)
        #expect(set.status == 200, "\(set.body)")
        #expect(try Self.value(set, "ldevid.lifetime.days")! == ("14", "registry"))
        #expect(try Self.value(set, "ldevid.renewal.fraction")!.source == "configuration")
        #expect(try await server.state.store.settings() == ["ldevid.lifetime.days": "14", "limits.device.burst": "40"])
        #expect(server.state.configuration.rateLimits.perDevice.burst == 40)

        let (certificate, _) = try await MetricsTests.enroll(server, device: "dev-1")
        #expect(certificate.notValidAfter.timeIntervalSince(server.clock.now()) == 14 * 86_400)

        let unset = try await Self.put(server, #"{"settings":{"ldevid.lifetime.days":null}}"#)
        #expect(unset.status == 200, "\(unset.body)")
        #expect(try Self.value(unset, "ldevid.lifetime.days")! == ("30", "configuration"))
        let (next, _) = try await MetricsTests.enroll(server, device: "dev-2")
        #expect(next.notValidAfter.timeIntervalSince(server.clock.now()) == 30 * 86_400)
        let audit = try await server.state.store.auditEvents(AuditFilter(action: "settings.update"))
        #expect(audit.count == 2 && audit.allSatisfy { $0.outcome == .success })
        try await server.stop()
    }

    @Test(
        "a bad setting is refused 400 with the reason, nothing is stored, the denial is audited",
        arguments: [
            (#"{"settings":{"nonsense.key":"1"}}"#, "not a setting DevID keeps in the registry: nonsense.key"),
            (#"{"settings":{"ldevid.grace.days":"soon"}}"#, "ldevid.grace.days: a number expected"),
            (#"{"settings":{"ldevid.renewal.fraction":1.5}}"#, "renewal fraction must be between 0 and 1"),
            (#"{"settings":{"limits.device.burst":-1}}"#, "limits.device: per.second and burst must be 0 or more"),
            (#"{"settings":{}}"#, "no setting given"),
            (#"["ldevid.lifetime.days"]"#, "body must be"),
        ])
    func refused(body: String, reason: String) async throws {
        let server = try await MetricsTests.server()
        _ = try await Self.put(server, #"{"settings":{"ldevid.grace.days":4}}"#)
        let reply = try await Self.put(server, body)
        #expect(reply.status == 400)
        #expect(reply.body.contains(reason), "\(reply.body)")
        #expect(try await server.state.store.settings() == ["ldevid.grace.days": "4"])
        #expect(server.state.configuration.ldevidPolicy.rotation.grace == 4 * 86_400)
        let denied = try await server.state.store.auditEvents(AuditFilter(action: "settings.update", outcome: .denied))
        #expect(denied.count == 1 && denied.first?.reason.count ?? 0 <= 300)
        try await server.stop()
    }

    @Test("SIGHUP's reload: a bad file keeps the configuration in effect; a good one changes only the live settings")
    func reloadKeepsPreviousWhenBad() throws {
        var started = ServerConfiguration()
        started.estPort = 9443
        let live = LiveConfiguration(started)
        var bad = started
        bad.ldevidPolicy.rotation.renewalFraction = 2
        #expect(throws: (any Error).self) { try live.reload(base: bad) }
        #expect(live.current == started)

        var good = started
        good.ldevidPolicy.lifetime = 5 * 86_400
        good.estPort = 1  // not live: needs a restart
        try live.reload(base: good)
        #expect(live.current.ldevidPolicy.lifetime == TimeInterval(5 * 86_400))
        #expect(live.current.estPort == 9443)
        // A registry setting wins over the file.
        try live.apply(registry: ["ldevid.lifetime.days": "2"])
        #expect(live.current.ldevidPolicy.lifetime == TimeInterval(2 * 86_400))
        try live.reload(base: started)
        #expect(live.current.ldevidPolicy.lifetime == TimeInterval(2 * 86_400))
    }
}
