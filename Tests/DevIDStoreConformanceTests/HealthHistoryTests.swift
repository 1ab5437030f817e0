import DevIDCore
import DevIDStore
import Foundation
import Testing

/// The health history (``Store/addHealthCounts(_:pruneBefore:)``) and the registry reads of the anomaly checks and
/// the dashboard: onboarding times, expiry by day, stale devices.
@Suite("Health history")
struct HealthHistoryTests {
    static let hour: TimeInterval = 3_600
    static let day: TimeInterval = 86_400

    static func count(
        _ hourIndex: Int, _ tenant: String = "acme", _ first: String = "tls", _ second: String = "expired",
        count: Int = 1, metric: String = "auth_failures"
    ) -> HealthCount {
        HealthCount(
            hour: HealthCount.hour(of: Fixture.time(Double(hourIndex) * hour)), metric: metric, tenant: tenant,
            first: first, second: second, count: count)
    }

    @Test("counts of one hour and label set add up; other hours, labels and metrics stay apart", arguments: StoreKind.allCases)
    func adds(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let prune = Fixture.time(-400 * Self.day)
            try await store.addHealthCounts([Self.count(0), Self.count(0, count: 2), Self.count(1)], pruneBefore: prune)
            try await store.addHealthCounts(
                [Self.count(0, count: 4), Self.count(0, "other"), Self.count(0, "acme", "est", "revoked"),
                 Self.count(0, "acme", "enroll", "issued", metric: "enrollments"), Self.count(2, count: 0)],
                pruneBefore: prune)
            let rows = try await store.healthCounts(
                metric: "auth_failures", from: Fixture.time(0), to: Fixture.time(3 * Self.hour))
            let summary = rows.map { "\($0.hour.timeIntervalSince(HealthCount.hour(of: Fixture.time(0))))/\($0.tenant)/\($0.first)/\($0.second)=\($0.count)" }
            #expect(
                Set(summary) == [
                    "0.0/acme/tls/expired=7", "0.0/other/tls/expired=1", "0.0/acme/est/revoked=1",
                    "3600.0/acme/tls/expired=1",
                ], "\(summary)")
            #expect(rows.map(\.hour) == rows.map(\.hour).sorted(), "ordered by hour")
            // `to` is exclusive, `from` rounds down to its hour.
            let first = try await store.healthCounts(
                metric: "auth_failures", from: Fixture.time(1_800), to: HealthCount.hour(of: Fixture.time(Self.hour)))
            #expect(first.map(\.count).reduce(0, +) == 9)
            let enrollments = try await store.healthCounts(
                metric: "enrollments", from: Fixture.time(0), to: Fixture.time(Self.day))
            #expect(enrollments.map(\.count) == [1])
        }
    }

    @Test("adding prunes every hour before the retention cut", arguments: StoreKind.allCases)
    func prunes(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.addHealthCounts(
                [Self.count(0), Self.count(24), Self.count(48)], pruneBefore: Fixture.time(-Self.day))
            try await store.addHealthCounts([Self.count(72)], pruneBefore: HealthCount.hour(of: Fixture.time(Self.day)))
            let rows = try await store.healthCounts(
                metric: "auth_failures", from: Fixture.time(-Self.day), to: Fixture.time(10 * Self.day))
            #expect(rows.map { Int($0.hour.timeIntervalSince(HealthCount.hour(of: Fixture.time(0))) / Self.hour) } == [24, 48, 72])
        }
    }

    @Test("onboarding: registration to the first LDevID of each device, windowed on that first issuance", arguments: StoreKind.allCases)
    func onboarding(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)  // dev-1 registered at time(2)
            try await store.insertDevice(Fixture.device("dev-2", tenant: "other"), audit: nil)
            try await store.insertDevice(Fixture.device("dev-3"), audit: nil)  // never enrolled
            for credential in [
                Fixture.credential(1, device: "dev-1", createdAt: Fixture.time(602)),  // 600 s after registration
                Fixture.credential(2, device: "dev-1", createdAt: Fixture.time(5_000)),  // a renewal: not counted
                Fixture.credential(3, device: "dev-2", createdAt: Fixture.time(32)),
            ] {
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            }
            let times = try await store.onboardingTimes(from: Fixture.time(0), to: Fixture.time(Self.day), tenant: nil, limit: 10)
            #expect(times.map(\.device.rawValue) == ["dev-2", "dev-1"])
            #expect(times.map(\.seconds) == [30, 600])
            #expect(times.map(\.tenant.rawValue) == ["other", "acme"])
            let later = try await store.onboardingTimes(from: Fixture.time(100), to: Fixture.time(Self.day), tenant: nil, limit: 10)
            #expect(later.map(\.device.rawValue) == ["dev-1"])
            let newest = try await store.onboardingTimes(from: Fixture.time(0), to: Fixture.time(Self.day), tenant: nil, limit: 1)
            #expect(newest.map(\.device.rawValue) == ["dev-1"], "the newest first issuance")
            let other = try await store.onboardingTimes(
                from: Fixture.time(0), to: Fixture.time(Self.day), tenant: Fixture.tenantID("other"), limit: 10)
            #expect(other.map(\.device.rawValue) == ["dev-2"])
        }
    }

    @Test("current LDevIDs by whole days left, per tenant, inside the horizon", arguments: StoreKind.allCases)
    func expiryDays(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            for (name, tenant) in [("a-2", "acme"), ("a-3", "acme"), ("o-1", "other")] {
                try await store.insertDevice(Fixture.device(name, tenant: tenant, state: .active), audit: nil)
            }
            let now = Fixture.time(1_000)
            let lefts: [(String, TimeInterval, CredentialStatus)] = [
                ("a-2", 0.5 * Self.day, .active), ("a-3", 1.5 * Self.day, .active), ("a-2", 1.2 * Self.day, .active),
                ("o-1", 6.9 * Self.day, .active), ("o-1", 8 * Self.day, .active),  // past the 7-day horizon
                ("a-3", 1 * Self.day, .revoked), ("a-3", -Self.day, .active),
            ]
            for (index, (device, left, status)) in lefts.enumerated() {
                var credential = Fixture.credential(index + 1, device: device)
                credential.notAfter = now.addingTimeInterval(left)
                credential.status = status
                if status == .revoked {
                    credential.revokedAt = now
                    credential.revocationReason = .keyCompromise
                }
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            }
            let days = try await store.expiryByDay(now: now, days: 7)
            #expect(days[Fixture.tenantID("acme")] == [1, 2, 0, 0, 0, 0, 0])
            #expect(days[Fixture.tenantID("other")] == [0, 0, 0, 0, 0, 0, 1])
        }
    }

    @Test("stale devices: active, with a current LDevID, not seen (or registered) since the cut", arguments: StoreKind.allCases)
    func stale(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            for name in ["s-1", "s-2", "s-3", "s-4", "s-5"] {
                try await store.insertDevice(Fixture.device(name, state: name == "s-5" ? .suspended : .active), audit: nil)
            }
            for (index, name) in ["s-1", "s-2", "s-3", "s-5"].enumerated() {
                let credential = Fixture.credential(index + 1, device: name)
                try await store.insertCredential(credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            }
            try await store.recordSeen(Fixture.deviceID("s-1"), at: Fixture.time(100))
            try await store.recordSeen(Fixture.deviceID("s-2"), at: Fixture.time(5_000))
            // s-3 never seen (registered at time(2)); s-4 has no credential; s-5 is suspended.
            let stale = try await store.staleDevices(seenBefore: Fixture.time(1_000), now: Fixture.time(500), limit: 10)
            #expect(stale.count == 2)
            #expect(stale.oldest.map(\.device.rawValue) == ["s-3", "s-1"])
            #expect(stale.oldest.map(\.lastSeen) == [nil, Fixture.time(100)])
            let limited = try await store.staleDevices(seenBefore: Fixture.time(1_000), now: Fixture.time(500), limit: 1)
            #expect(limited.count == 2)
            #expect(limited.oldest.map(\.device.rawValue) == ["s-3"])
            // Once their LDevIDs expired, they are no longer "about to fall off": they fell.
            let expired = try await store.staleDevices(
                seenBefore: Fixture.time(1_000), now: Fixture.time(31 * Self.day), limit: 10)
            #expect(expired.count == 0)
        }
    }
}
