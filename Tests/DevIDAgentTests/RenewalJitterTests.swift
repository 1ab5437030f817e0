import DevIDCore
import DevIDTesting
import Foundation
import Testing

/// A fleet does not renew in one burst: 1,000 devices with certificates of the same validity draw their renewal
/// times with ``RotationPolicy/scheduledRenewal(notBefore:notAfter:using:)``, as the agent does once per certificate.
@Suite("renewal jitter")
struct RenewalJitterTests {
    @Test("1,000 devices: renewals spread across ±10 % of the renewal window, no hour holds more than 5 %")
    func fleetSpread() {
        let policy = RotationPolicy()
        let notBefore = Date(timeIntervalSince1970: 1_790_000_000)
        let notAfter = notBefore.addingTimeInterval(30 * 86_400)
        let start = policy.renewalStart(notBefore: notBefore, notAfter: notAfter)
        let window = notAfter.timeIntervalSince(start)
        var random = SplitMix64(seed: 42)
        let renewals = (0..<1_000).map { _ in
            policy.scheduledRenewal(notBefore: notBefore, notAfter: notAfter, using: &random)
        }

        let offsets = renewals.map { $0.timeIntervalSince(start) / window }
        let low = offsets.min() ?? 0
        let high = offsets.max() ?? 0
        // Inside ±10 % of the window, and spanning most of it.
        #expect(low >= -0.1 && high <= 0.1)
        #expect(high - low > 0.15, "spread \(high - low) of the window")
        #expect(renewals.allSatisfy { $0 < notAfter })

        // No burst: at most 5 % of the fleet in any hour (a burst would put 100 % in one).
        let hours = Dictionary(grouping: renewals) { Int($0.timeIntervalSince(start - window * 0.1) / 3_600) }
        let busiest = hours.values.map(\.count).max() ?? 0
        #expect(busiest <= 50, "busiest hour: \(busiest) renewals")
        #expect(hours.count >= 45, "renewals fall in \(hours.count) distinct hours of 48")

        // And no more than 5 % in any 1 % slice of the window (2.4 hours here).
        let slices = Dictionary(grouping: offsets) { Int((($0 + 0.1) * 100).rounded(.down)) }
        #expect((slices.values.map(\.count).max() ?? 0) <= 80, "1 % slices: \(slices.mapValues(\.count))")
        // Uniform: each half of the jitter range gets roughly half.
        let early = offsets.filter { $0 < 0 }.count
        #expect((420...580).contains(early), "\(early) of 1,000 before the unjittered start")
    }
}
