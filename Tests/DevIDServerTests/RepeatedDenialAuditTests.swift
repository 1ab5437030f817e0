import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// Issue #13 part 2: failures of an identified device stay individually audited, and bounded. A device that keeps
/// publishing to a forbidden topic makes its broker ask the decision API once per message; each denial used to be
/// one synced audit row.
@Suite("Repeated denials of a device are audited in aggregate", .serialized)
struct RepeatedDenialAuditTests {
    @Test("200 denied publishes of one device write 2 rows, not 200; other decisions and devices keep their own rows")
    func deniedPublishLoop() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("rd-1")
        _ = try await f.enroll("rd-2")
        for index in 0..<200 {
            let topic = "tenants/acme/devices/rd-9/telemetry/\(index)"
            #expect(try await f.decide(["device": "rd-1", "action": "publish", "topic": topic]) == ("deny", "topic_not_allowed"))
        }
        // Another reason, and another device: each its own group, written at once.
        #expect(
            try await f.decide(["device": "rd-1", "action": "publish", "topic": "tenants/globex/devices/rd-1/x"])
                == ("deny", "wrong_tenant"))
        #expect(
            try await f.decide(["device": "rd-2", "action": "publish", "topic": "tenants/acme/devices/rd-9/x"])
                == ("deny", "topic_not_allowed"))

        let filter = AuditFilter(action: "authz.publish", outcome: .denied, limit: 1000)
        let before = try await f.store.auditEvents(filter)
        #expect(before.count == 3, "\(before.map(\.reason))")
        #expect(
            before.contains {
                $0.device?.rawValue == "rd-1" && $0.actor == "device:rd-1"
                    && $0.reason == "publish tenants/acme/devices/rd-9/telemetry/0: topic_not_allowed"
            }, "the first denial is written at once, with its topic")
        #expect(before.contains { $0.device?.rawValue == "rd-1" && $0.reason.hasSuffix(": wrong_tenant") })
        #expect(before.contains { $0.device?.rawValue == "rd-2" && $0.reason.hasSuffix(": topic_not_allowed") })
        #expect(await f.server.state.repeatedDenials.pending == 199)
        // Every decision is still counted.
        #expect(f.server.state.authz.counters.count(action: "publish", allowed: false) == 202)

        f.server.clock.advance(by: 60)
        #expect(await f.server.state.repeatedDenials.flush() == 1)
        let after = try await f.store.auditEvents(filter)
        #expect(after.count == 4)
        let summary = try #require(after.first)
        #expect(summary.actor == "device:rd-1")
        #expect(summary.device?.rawValue == "rd-1")
        #expect(summary.tenant?.rawValue == "acme")
        #expect(summary.reason == "200 in 60 s (first recorded alone): publish: topic_not_allowed")
        #expect(await f.server.state.repeatedDenials.flush() == 0, "nothing left to write")

        // A new window writes the first denial at once again.
        #expect(
            try await f.decide(["device": "rd-1", "action": "publish", "topic": "tenants/acme/devices/rd-9/again"])
                == ("deny", "topic_not_allowed"))
        #expect(try await f.store.auditEvents(filter).first?.reason == "publish tenants/acme/devices/rd-9/again: topic_not_allowed")
        #expect(try await f.store.verifyAuditChain() == nil)
        try await f.server.stop()
    }

    @Test("beyond maximumKeys groups a window counts per action and writes one overflow row")
    func overflow() async throws {
        let server = try await LiveServer()
        let denials = RepeatedDenials(auditor: server.state.auditor, clock: server.clock, maximumKeys: 2)
        for device in ["a-1", "a-2", "a-3", "a-4", "a-3"] {
            await denials.record(
                actor: "device:\(device)", action: "authz.subscribe", reason: "subscribe #: topic_not_allowed",
                group: "subscribe: topic_not_allowed", tenant: TenantID(rawValue: "acme"),
                device: DeviceID(rawValue: device), serial: nil)
        }
        let filter = AuditFilter(action: "authz.subscribe", outcome: .denied, limit: 100)
        #expect(try await server.state.store.auditEvents(filter).map(\.actor).sorted() == ["device:a-1", "device:a-2"])
        #expect(await denials.pending == 3)
        server.clock.advance(by: 60)
        #expect(await denials.flush() == 1)
        #expect(
            try await server.state.store.auditEvents(filter).first?.reason
                == "3 denials of other devices in 60 s (over 2 kinds of denial)")
        try await server.stop()
    }
}
