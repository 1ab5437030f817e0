import DevIDCore
import Foundation
import Testing

@Suite("Device state machine")
struct DeviceLifecycleTests {
    @Test func manufacturedDeviceEnrollsAndBecomesActive() {
        var lifecycle = DeviceLifecycle(state: .manufactured)
        #expect(lifecycle.enroll() == .transition(to: .active))
        #expect(lifecycle.state == .active)
        #expect(lifecycle.reenroll() == .transition(to: .active))
    }

    @Test func suspendIsReversible() {
        var lifecycle = DeviceLifecycle(state: .active)
        #expect(lifecycle.suspend() == .transition(to: .suspended))
        #expect(lifecycle.enroll() == .refuse(reason: "device is suspended"))
        #expect(lifecycle.state == .suspended)
        #expect(lifecycle.resume() == .transition(to: .active))
    }

    @Test func resumingADeviceWithoutCredentialsReturnsItToManufactured() {
        var lifecycle = DeviceLifecycle(state: .suspended)
        #expect(lifecycle.resume(holdsCredential: false) == .transition(to: .manufactured))
        #expect(lifecycle.state == .manufactured)
        #expect(lifecycle.enroll() == .transition(to: .active))
        var revoked = DeviceLifecycle(state: .revoked)
        #expect(revoked.resume(holdsCredential: false) == .refuse(reason: "device is revoked"), "refusals unchanged")
        #expect(revoked.state == .revoked)
    }

    @Test func aDeviceWaitingForApprovalIsNotSuspended() {
        var lifecycle = DeviceLifecycle(state: .pendingApproval)
        #expect(lifecycle.suspend() == .refuse(reason: "device is waiting for operator approval"))
        #expect(lifecycle.state == .pendingApproval)
        #expect(lifecycle.revoke() == .transition(to: .revoked))
    }

    @Test func revokedDeviceCannotEnrollUntilReprovisioned() {
        var lifecycle = DeviceLifecycle(state: .active)
        #expect(lifecycle.revoke() == .transition(to: .revoked))
        #expect(lifecycle.enroll() == .refuse(reason: "device is revoked"))
        #expect(lifecycle.reenroll() == .refuse(reason: "device is revoked"))
        #expect(lifecycle.resume() == .refuse(reason: "device is revoked"))
        #expect(lifecycle.reprovision() == .transition(to: .manufactured))
        #expect(lifecycle.enroll() == .transition(to: .active))
    }

    @Test func decommissionedIsFinal() {
        var lifecycle = DeviceLifecycle(state: .active)
        #expect(lifecycle.decommission() == .transition(to: .decommissioned))
        for event in [DeviceEvent.enroll, .reenroll, .resume, .revoke, .reprovision, .approve] {
            var copy = lifecycle
            if case .transition = copy.apply(event) {
                Issue.record("\(event) must not leave decommissioned")
            }
            #expect(copy.state == .decommissioned)
        }
    }

    @Test func reenrollOfADeviceThatNeverEnrolledIsRefused() {
        var lifecycle = DeviceLifecycle(state: .manufactured)
        #expect(lifecycle.reenroll() == .refuse(reason: "device in state manufactured cannot reenroll"))
        #expect(lifecycle.state == .manufactured)
    }

    /// Every (state, event) pair either transitions or refuses with a one-line reason; refusals never move state.
    @Test(arguments: DeviceState.allCases)
    func everyEventIsDecided(state: DeviceState) {
        for event in DeviceEvent.allCases {
            var lifecycle = DeviceLifecycle(state: state)
            switch lifecycle.apply(event) {
            case .transition(let next):
                #expect(lifecycle.state == next)
            case .refuse(let reason):
                #expect(lifecycle.state == state)
                #expect(!reason.isEmpty && !reason.contains("\n"))
            }
        }
    }
}

@Suite("Identifiers and encodings")
struct IdentifierTests {
    @Test(arguments: ["dev-1", "A", "sensor_42.b", String(repeating: "x", count: 64)])
    func validIdentifiers(value: String) {
        #expect(DeviceID(rawValue: value) != nil)
        #expect(TenantID(rawValue: value) != nil)
        #expect(LotID(rawValue: value) != nil)
    }

    @Test(arguments: [
        "", "-dash", ".dot", "with space", "slash/x", "tenant#", "ünïcode", "a+b", String(repeating: "x", count: 65),
        "../etc", "{device}", "$SYS",
    ])
    func invalidIdentifiers(value: String) {
        #expect(DeviceID(rawValue: value) == nil)
        #expect(throws: DevIDCoreError.self) { try TenantID(value) }
    }

    @Test func serialNumbersAreLowercaseHex() {
        #expect(SerialNumber(bytes: [0x0a, 0xff, 0x00]).rawValue == "0aff00")
        #expect(SerialNumber(rawValue: "0AFF00")?.rawValue == "0aff00")
        #expect(SerialNumber(rawValue: "xyz") == nil)
        #expect(SerialNumber(rawValue: "") == nil)
    }

    @Test func hexRoundTrip() {
        let bytes: [UInt8] = [0, 1, 0x7f, 0x80, 0xff]
        #expect(Hex.encode(bytes) == "00017f80ff")
        #expect(Hex.decode("00017F80ff") == bytes)
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }

    @Test func constantTimeComparison() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(constantTimeEquals([UInt8](), []))
    }

    @Test func revocationReasonCodesFollowRFC5280() {
        #expect(RevocationReason.keyCompromise.code == 1)
        #expect(RevocationReason.superseded.code == 4)
        #expect(RevocationReason.removeFromCRL.code == 8)
        #expect(RevocationReason(code: 7) == nil)
        for reason in RevocationReason.allCases { #expect(RevocationReason(code: reason.code) == reason) }
    }

    @Test func manualClockMovesOnlyWhenTold() {
        let clock = ManualWallClock()
        let start = clock.now()
        #expect(clock.now() == start)
        clock.advance(by: 86_400)
        #expect(clock.now().timeIntervalSince(start) == 86_400)
    }
}
