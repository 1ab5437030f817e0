import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Issue #13: the agent honours `429` and `503` `Retry-After`, with jitter, never retrying sooner than told.
@Suite("Agent under back-pressure", .serialized)
struct BackpressureAgentTests {
    @Test("a check-in refused with 429 waits at least Retry-After (plus at most a fifth), then succeeds")
    func checkInRateLimited() async throws {
        var limits = RateLimits()
        limits.perDevice = .init(perSecond: 1.0 / 120, burst: 1)
        let server = try await AgentTestServer(rateLimits: limits)
        do {
            let device = try await TestDevice.enroll(server, name: "busy-1")
            let agent = try device.agent(checkInInterval: 3_600)
            let first = await agent.step()
            #expect(first.error == nil, "\(first)")
            #expect(first.reason == .scheduled)

            let limited = await agent.step()
            #expect(limited.reason == .retry)
            #expect(limited.error?.status == 429)
            #expect(limited.error?.serverCode == .rateLimited)
            #expect(limited.error?.retryAfter == 120)
            #expect(limited.delay >= 120, "never sooner than Retry-After: \(limited.delay)")
            #expect(limited.delay <= 144, "jitter of at most a fifth: \(limited.delay)")

            device.advance(limited.delay)
            let after = await agent.step()
            #expect(after.error == nil, "\(after)")
            #expect(after.reason == .scheduled)
            device.remove()
        } catch {
            try? await server.stop()
            throw error
        }
        try await server.stop()
    }

    @Test("an enrollment refused with 503 carries Retry-After and the overloaded code to the caller")
    func enrollmentOverloaded() async throws {
        var limits = RateLimits()
        limits.maxEnrollmentsInFlight = 1
        limits.renewalReserve = 1
        limits.overloadRetryAfterSeconds = 9
        let server = try await AgentTestServer(rateLimits: limits)
        let state = try TemporaryDirectory(prefix: "devid-agent-503")
        defer { state.remove() }
        let secret = try await server.claimToken()
        let error = await #expect(throws: AgentError.self) {
            try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: state.file("agent"),
                bootstrap: .token(secret, deviceID: nil), clock: server.clock)
        }
        #expect(error?.status == 503)
        #expect(error?.serverCode == .overloaded)
        #expect(error?.retryAfter == 9)
        try await server.stop()
    }

    @Test("Backoff: a Retry-After floor is never undercut, and devices told the same wait spread out", arguments: [
        1 as UInt64, 2, 3, 4, 5,
    ])
    func backoffFloor(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let backoff = Backoff(base: 30, cap: 3_600)
        var delays: Set<Int> = []
        for attempt in 0..<6 {
            let delay = backoff.delay(attempt: attempt, retryAfter: 300, using: &random)
            #expect(delay >= 300)
            #expect(delay <= max(360, 30 * pow(2, Double(attempt))))
            delays.insert(Int(delay))
        }
        #expect(delays.count > 1, "jittered")
    }

    @Test("a Retry-After above the backoff's cap is still honoured, up to 7 days", arguments: [UInt64(1), 2, 3])
    func retryAfterAboveCap(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let backoff = Backoff(base: 30, cap: 6 * 3_600)
        // An operator's approval wait of a day: the old floor was min(Retry-After, cap), back after 6-7.2 hours.
        let day = backoff.delay(attempt: 0, retryAfter: 86_400, using: &random)
        #expect(day >= 86_400 && day <= 86_400 * 1.2, "\(day)")
        // Years: at most a week (and a fifth), never sooner than a week.
        let years = backoff.delay(attempt: 3, retryAfter: 3 * 365 * 86_400, using: &random)
        #expect(years >= Backoff.maximumRetryAfter && years <= Backoff.maximumRetryAfter * 1.2, "\(years)")
    }
}
