import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// `kill -9` between any two steps: the agent stops right after a step (writing nothing more), a fresh agent over
/// the same directory starts, and (1) the current identity is a matching pair the server accepts, (2) the next steps
/// finish the rotation.
@Suite("agent: killed between any two steps", .serialized)
struct CrashRecoveryTests {
    static let rotationSteps: [RotationStep] = [
        .checkIn, .stageKey, .reenroll, .stageCertificate, .keepPrevious, .promote, .reload, .confirm, .forget,
    ]

    @Test("killed after a step, restarted: a working identity, then the rotation finishes", arguments: rotationSteps)
    func crashAfter(_ step: RotationStep) async throws {
        try await withDevice(name: "sensor-crash") { device in
            let old = try device.current()
            device.advance(21 * day + 3_600)

            let crashed = try await device.agent(crashAfter: step).step()
            #expect(crashed.reason == .crashed, "\(crashed)")
            #expect(crashed.completed.last == step)
            let stagedKey = try? IdentitySlot(.next, in: device.directory).stagedKey()

            // (1) After the "kill": the current identity is a matching pair, valid, and the server accepts it.
            let survivor = try device.current()
            let now = device.server.clock.now()
            #expect(survivor.certificate.notValidBefore <= now && now < survivor.certificate.notValidAfter)
            let accepted = try await device.status(survivor.certificate, survivor.key)
            #expect((try? accepted.get()) != nil, "the server accepts the current identity: \(accepted)")
            let promoted = survivor.certificate != old.certificate
            #expect(promoted == [.promote, .reload, .confirm, .forget].contains(step))

            // (2) A restarted agent finishes the rotation in its next step.
            let resumed = try await device.agent().step()
            #expect(resumed.error == nil, "\(resumed)")
            #expect(resumed.reason == .scheduled)
            let final = try device.current()
            #expect(final.certificate != old.certificate, "rotated")
            #expect(final.certificate.publicKey != old.certificate.publicKey, "with a new key")
            if step == .stageKey {
                #expect(final.certificate.publicKey == stagedKey?.key.publicKey, "the staged key was used")
            }
            if promoted {
                #expect(final.certificate == survivor.certificate, "no second rotation after the promotion")
            }
            #expect(!IdentitySlot(.next, in: device.directory).exists)
            #expect(!IdentitySlot(.previous, in: device.directory).exists)
            #expect(try AgentMemory.load(device.directory).reloadPending == false)

            // The server: the new credential active and confirmed, the old one superseded (then revoked).
            let new = try await device.server.store.credential(serial: final.certificate.devidSerial)
            #expect(new?.status == .active && new?.confirmedAt != nil)
            let replaced = try await device.server.store.credential(serial: old.certificate.devidSerial)
            #expect(replaced?.status == .superseded)
            // Revoked after the successor's confirmation + confidence (1 h), also when a first successor was lost in
            // the crash (the server re-points the old credential at the one that replaced the lost one).
            device.advance(2 * 3_600)
            try await device.sweep()
            let revoked = try await device.server.store.credential(serial: old.certificate.devidSerial)
            #expect(revoked?.status == .revoked && revoked?.revocationReason == .superseded)
            // Nothing but the final credential is left active (a successor lost in a crash was given up).
            let active = try await device.credentials().filter { $0.status == .active }
            #expect(active.map(\.serial) == [final.certificate.devidSerial])

            // The reload hook ran for the new certificate (again, if the crash came while it was pending).
            let serial = final.certificate.devidSerial.rawValue
            let runs = device.hookLines().filter { $0.hasPrefix(serial + " ") }
            #expect(runs.count == 1, "the hook ran once for \(serial): \(device.hookLines())")
            #expect(runs.allSatisfy { $0.hasSuffix(" " + device.directory.path) })
        }
    }

    @Test("killed right after a bootstrap with the IDevID: the restart checks in and runs the pending hook")
    func crashAfterBootstrap() async throws {
        try await withDevice(name: "SN-CRASH-BOOT", idevid: true) { device in
            device.advance(365 * day)
            let crashed = try await device.agent(crashAfter: .bootstrap).step()
            #expect(crashed.reason == .crashed)
            let survivor = try device.current()
            #expect(try await device.status(survivor.certificate, survivor.key).get().credentialStatus == .active)
            #expect(device.hookLines().isEmpty)
            let resumed = try await device.agent().step()
            #expect(resumed.error == nil, "\(resumed)")
            #expect(resumed.change == nil)
            #expect(resumed.completed == [.reload, .checkIn])
            #expect(device.hookLines().count == 1)
            #expect(try device.current().certificate == survivor.certificate)
        }
    }

    @Test("killed twice in a row at different steps, still converges")
    func crashTwice() async throws {
        try await withDevice(name: "sensor-crash-twice") { device in
            let old = try device.current().certificate
            device.advance(21 * day + 3_600)
            #expect(try await device.agent(crashAfter: .reenroll).step().reason == .crashed)
            #expect(try await device.agent(crashAfter: .keepPrevious).step().reason == .crashed)
            #expect(try await device.agent(crashAfter: .reload).step().reason == .crashed)
            let resumed = try await device.agent().step()
            #expect(resumed.error == nil, "\(resumed)")
            let final = try device.current()
            #expect(final.certificate != old)
            #expect(try await device.status(final.certificate, final.key).get().credentialStatus == .active)
            #expect(!IdentitySlot(.previous, in: device.directory).exists)
        }
    }
}
