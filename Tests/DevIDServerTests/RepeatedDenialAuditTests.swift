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
    @Test("200 denied publishes of one device write a bounded number of rows; other decisions and devices keep their own")
    func deniedPublishLoop() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("rd-1")
        _ = try await f.enroll("rd-2")
        let token = f.authzToken.trimmingCharacters(in: .whitespacesAndNewlines)
        let headers = [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")]
        // One keep-alive connection, so the loop is quick even on a loaded machine.
        let answers = try await withClient(try f.server.client()) { client in
            var answers: [String] = []
            for index in 0..<200 {
                let body = #"{"device":"rd-1","action":"publish","topic":"tenants/acme/devices/rd-9/telemetry/\#(index)"}"#
                answers.append(try await client.send("POST", f.server.opsURL + "/v1/authz/mqtt", headers: headers, body: body).body)
            }
            return answers
        }
        #expect(answers.allSatisfy { $0.contains(#""reason":"topic_not_allowed""#) }, "\(answers.first ?? "")")
        // Another reason, and another device: each its own group, written at once.
        #expect(
            try await f.decide(["device": "rd-1", "action": "publish", "topic": "tenants/globex/devices/rd-1/x"])
                == ("deny", "wrong_tenant"))
        #expect(
            try await f.decide(["device": "rd-2", "action": "publish", "topic": "tenants/acme/devices/rd-9/x"])
                == ("deny", "topic_not_allowed"))
        // Every decision is still counted.
        #expect(f.server.state.authz.counters.count(action: "publish", allowed: false) == 202)

        let filter = AuditFilter(action: "authz.publish", outcome: .denied, limit: 1000)
        #expect(
            try await f.store.auditEvents(filter).contains {
                $0.device?.rawValue == "rd-1" && $0.actor == "device:rd-1"
                    && $0.reason == "publish tenants/acme/devices/rd-9/telemetry/0: topic_not_allowed"
            }, "the first denial is written at once, with its topic")
        await f.server.state.repeatedDenials.flush()
        let rows = try await f.store.auditEvents(filter)
        #expect(rows.contains { $0.device?.rawValue == "rd-1" && $0.reason.hasSuffix(": wrong_tenant") })
        #expect(rows.contains { $0.device?.rawValue == "rd-2" && $0.reason.hasSuffix(": topic_not_allowed") })

        // The loop's rows: per window, its first denial (with the topic) and, if it repeated, one summary with the
        // window's count. The server's own minute flusher may have cut the loop into two windows on a slow machine.
        let loop = rows.filter { $0.device?.rawValue == "rd-1" && $0.reason.contains("topic_not_allowed") }
        let firsts = loop.filter { $0.reason.hasPrefix("publish tenants/acme/devices/rd-9/telemetry/") }
        let summaries = loop.compactMap { row -> Int? in
            guard let match = row.reason.wholeMatch(of: #/(\d+) in \d+ s \(first recorded alone\): publish: topic_not_allowed/#)
            else { return nil }
            #expect(row.actor == "device:rd-1" && row.tenant?.rawValue == "acme", "\(row)")
            return Int(match.1)
        }
        #expect(firsts.count + summaries.count == loop.count, "\(loop.map(\.reason))")
        #expect(loop.count <= 4, "200 denials wrote \(loop.count) rows")
        #expect(summaries.reduce(0, +) + firsts.count - summaries.count == 200, "\(loop.map(\.reason))")
        #expect(await f.server.state.repeatedDenials.flush() == 0, "nothing left to write")

        // A new window writes the first denial at once again.
        #expect(
            try await f.decide(["device": "rd-1", "action": "publish", "topic": "tenants/acme/devices/rd-9/again"])
                == ("deny", "topic_not_allowed"))
        #expect(try await f.store.auditEvents(filter).first?.reason == "publish tenants/acme/devices/rd-9/again: topic_not_allowed")
        #expect(try await f.store.verifyAuditChain() == nil)
        try await f.server.stop()
    }

    /// A broker asks `connect` once per session; a device in a reconnect loop made each one a synced audit row.
    @Test("100 connect grants of one device write its first connect and one count a minute; another device its own")
    func connectLoop() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("rc-1")
        _ = try await f.enroll("rc-2")
        for _ in 0..<100 {
            #expect(try await f.decide(["device": "rc-1", "action": "connect"]) == ("allow", "ok"))
        }
        #expect(try await f.decide(["device": "rc-2", "action": "connect"]) == ("allow", "ok"))
        #expect(f.server.state.authz.counters.count(action: "connect", allowed: true) == 101, "every grant counted")
        let filter = AuditFilter(action: "authz.connect", outcome: .success, limit: 1000)
        let first = try await f.store.auditEvents(filter)
        #expect(first.contains { $0.device?.rawValue == "rc-1" && $0.actor == "device:rc-1" && $0.reason == "connect: ok" })
        #expect(first.contains { $0.device?.rawValue == "rc-2" && $0.reason == "connect: ok" }, "each device its own")

        f.server.clock.advance(by: 60)
        await f.server.state.repeatedConnects.flush()
        // Per window, the first connect and, if it repeated, one summary (the server's own minute flusher may have
        // cut the loop into two windows on a slow machine).
        let loop = try await f.store.auditEvents(filter).filter { $0.device?.rawValue == "rc-1" }
        let summaries = loop.compactMap { row -> Int? in
            guard let match = row.reason.wholeMatch(of: #/(\d+) in \d+ s \(first recorded alone\): connect: ok/#)
            else { return nil }
            #expect(row.actor == "device:rc-1" && row.tenant?.rawValue == "acme" && row.serial != nil, "\(row)")
            return Int(match.1)
        }
        let firsts = loop.filter { $0.reason == "connect: ok" }
        #expect(firsts.count + summaries.count == loop.count, "\(loop.map(\.reason))")
        #expect(loop.count <= 4, "100 connects wrote \(loop.count) rows")
        #expect(summaries.reduce(0, +) + firsts.count - summaries.count == 100, "\(loop.map(\.reason))")
        #expect(await f.server.state.repeatedConnects.flush() == 0, "nothing left to write")
        #expect(try await f.store.verifyAuditChain() == nil)
        try await f.server.stop()
    }

    @Test("beyond maximumKeys groups a window counts per action and writes one overflow row")
    func overflow() async throws {
        let server = try await LiveServer()
        let denials = RepeatedDecisions(auditor: server.state.auditor, clock: server.clock, maximumKeys: 2)
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
        // Grants counted the same way are written as grants.
        let connects = RepeatedDecisions(
            auditor: server.state.auditor, clock: server.clock, maximumKeys: 1, outcome: .success)
        for device in ["b-1", "b-2", "b-3"] {
            await connects.record(
                actor: "device:\(device)", action: "authz.connect", reason: "connect: ok", group: "connect: ok",
                tenant: TenantID(rawValue: "acme"), device: DeviceID(rawValue: device), serial: nil)
        }
        server.clock.advance(by: 60)
        #expect(await connects.flush() == 1)
        let granted = try await server.state.store.auditEvents(
            AuditFilter(action: "authz.connect", outcome: .success, limit: 100))
        #expect(granted.map(\.reason) == ["2 grants of other devices in 60 s (over 1 kinds of grant)", "connect: ok"])
        try await server.stop()
    }
}
