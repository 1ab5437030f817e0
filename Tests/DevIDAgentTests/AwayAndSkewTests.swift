import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// Devices that were away (offline for weeks), and devices whose clocks are wrong.
@Suite("agent: devices that were away, and clock skew", .serialized)
struct AwayAndSkewTests {
    @Test("offline 1 week: the identity is kept, and renews normally when due")
    func offlineOneWeek() async throws {
        try await withDevice(name: "SN-AWAY-1W", idevid: true) { device in
            let old = try device.current().certificate
            device.advance(7 * day)
            let agent = try device.agent()
            let wake = await agent.step()
            #expect(wake.error == nil, "\(wake)")
            #expect(wake.change == nil)
            #expect(wake.completed == [.checkIn])
            #expect(try device.current().certificate == old)
            // Step on to the renewal: an ordinary renewal, with the same lineage.
            var change: IdentityChange?
            var next = wake
            for _ in 0..<20 where change == nil {
                device.advance(next.delay)
                next = await agent.step()
                #expect(next.error == nil, "\(next)")
                change = next.change
            }
            #expect(change == .renewal)
            #expect(device.server.clock.now() < old.notValidAfter)
        }
    }

    @Test("offline 5 weeks: expired within grace, the agent renews late and the server audits it")
    func offlineFiveWeeks() async throws {
        try await withDevice(name: "SN-AWAY-5W", idevid: true) { device in
            let old = try device.current().certificate
            device.advance(35 * day)
            #expect(device.server.clock.now() > old.notValidAfter)
            let wake = try await device.agent().step()
            #expect(wake.error == nil, "\(wake)")
            #expect(wake.change == .lateRenewal)
            #expect(wake.completed.contains(.confirm) && wake.completed.contains(.forget))
            let new = try device.current()
            #expect(new.certificate != old)
            #expect(new.certificate.notValidAfter > device.server.clock.now().addingTimeInterval(29 * day))
            #expect(try await device.status(new.certificate, new.key).get().credentialStatus == .active)
            #expect(try device.directory.identity()?.bootstrap == "late-renewal")

            let events = try await device.server.store.auditEvents(
                AuditFilter(action: "est.reenroll", device: try device.deviceID, limit: 10))
            #expect(
                events.contains { $0.outcome == .success && $0.reason.contains("late renewal") },
                "\(events.map(\.reason))")
            let stored = try await device.server.store.credential(serial: old.devidSerial)
            #expect(stored?.status == .superseded || stored?.status == .revoked)
        }
    }

    @Test("offline 1 year: beyond grace, the agent bootstraps with its IDevID")
    func offlineOneYear() async throws {
        try await withDevice(name: "SN-AWAY-1Y", idevid: true) { device in
            let old = try device.current().certificate
            device.advance(365 * day)
            let wake = try await device.agent().step()
            #expect(wake.error == nil, "\(wake)")
            #expect(wake.change == .bootstrap)
            #expect(wake.completed.contains(.bootstrap) && wake.completed.contains(.checkIn))
            let new = try device.current()
            #expect(new.certificate != old)
            #expect(try await device.status(new.certificate, new.key).get().credentialStatus == .active)
            #expect(try device.directory.identity()?.bootstrap == "idevid")
            #expect(device.hookLines().count == 1)
        }
    }

    @Test("offline 1 year without an IDevID: a plain error that a new claim token is needed; nothing changes")
    func offlineOneYearNoIDevID() async throws {
        try await withDevice(name: "sensor-away-1y") { device in
            let before = Files.snapshot(device.stateDir)
            device.advance(365 * day)
            let wake = try await device.agent().step()
            #expect(wake.reason == .retry)
            #expect(wake.error?.code == .needsEnrollment)
            #expect(wake.error?.description.contains("a new claim token is needed") == true, "\(wake)")
            let after = Files.snapshot(device.stateDir)
            for file in AgentStateDirectory.File.allCases.map(\.rawValue) {
                #expect(after[file] == before[file], "\(file) unchanged")
            }
        }
    }

    /// The device clock's offset from the server's; `nil` means reset to 1970-01-01.
    static let offsets: [TimeInterval?] = [300, -300, day, -day, nil, 60 * day]

    @Test("device clock skew: enrolls, renews, and its corrected time is the server's", arguments: offsets)
    func skew(_ offset: TimeInterval?) async throws {
        try await withServer { server in
            let local = ManualWallClock(
                offset.map { server.clock.now().addingTimeInterval($0) } ?? Date(timeIntervalSince1970: 0))
            let device = try await TestDevice.enroll(server, name: "sensor-skew", localClock: local)
            defer { device.remove() }
            let agent = try device.agent()
            let first = await agent.step()
            #expect(first.error == nil, "\(first)")
            #expect(first.change == nil, "a valid certificate is kept, whatever the device clock says: \(first)")
            #expect(abs(agent.correctedNow.timeIntervalSince(server.clock.now())) < 1)
            // The skew survives a restart.
            let restarted = try device.agent()
            #expect(abs(restarted.correctedNow.timeIntervalSince(server.clock.now())) < 1)

            let old = try device.current().certificate
            device.advance(21 * day + 3_600)
            let renewal = await restarted.step()
            #expect(renewal.error == nil, "\(renewal)")
            #expect(renewal.change == .renewal)
            let new = try device.current()
            #expect(new.certificate != old)
            #expect(new.certificate.notValidBefore <= server.clock.now())
            #expect(try await device.status(new.certificate, new.key).get().credentialStatus == .active)
            #expect(abs(restarted.correctedNow.timeIntervalSince(server.clock.now())) < 1)
            let status = try IdentityStatus.read(stateDirectory: device.stateDir, clock: local)
            #expect(status.state == .valid, "evaluated at the corrected time")
            #expect(abs((status.clockSkew ?? 0) - server.clock.now().timeIntervalSince(local.now())) < 1)
        }
    }
}
