import DevIDCore
import DevIDStore
import Foundation
import Testing

/// ``Store/fleetHealth(now:upperBounds:)``: what `GET /metrics` reads at scrape time.
@Suite("Fleet health")
struct FleetHealthTests {
    static let day: TimeInterval = 86_400
    static let bounds: [TimeInterval] = [1, 7, 14, 30].map { $0 * day }

    /// A credential of `device` with `notAfter` at `left` seconds after `now` (status and kind as given).
    static func credential(
        _ index: Int, device: String, left: TimeInterval, now: Date, status: CredentialStatus = .active,
        kind: CredentialKind = .ldevid
    ) -> Credential {
        var credential = Fixture.credential(index, device: device)
        credential.notAfter = now.addingTimeInterval(left)
        credential.status = status
        credential.kind = kind
        if status == .revoked {
            credential.revokedAt = Fixture.time(30)
            credential.revocationReason = .keyCompromise
        }
        return credential
    }

    @Test("an empty registry: no devices, no histograms", arguments: StoreKind.allCases)
    func empty(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let health = try await store.fleetHealth(now: Fixture.time(100), upperBounds: Self.bounds)
            #expect(health.devices.isEmpty)
            #expect(health.expiry.isEmpty)
            #expect(health.upperBounds == Self.bounds)
        }
    }

    @Test(
        "devices by tenant and state; current LDevIDs by time left, cumulative, with bounds inclusive",
        arguments: StoreKind.allCases)
    func counts(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)  // acme/dev-1 manufactured, tenant other
            for (name, tenant, state) in [
                ("a-2", "acme", DeviceState.active), ("a-3", "acme", .active), ("a-4", "acme", .suspended),
                ("o-1", "other", .active),
            ] {
                try await store.insertDevice(Fixture.device(name, tenant: tenant, state: state), audit: nil)
            }
            let now = Fixture.time(1_000)
            let credentials = [
                Self.credential(1, device: "a-2", left: Self.day, now: now),  // exactly 1 d: in the 1 d bucket
                Self.credential(2, device: "a-3", left: Self.day + 1, now: now),  // just over: the 7 d bucket
                Self.credential(3, device: "a-4", left: 20 * Self.day, now: now),  // 30 d bucket
                Self.credential(4, device: "o-1", left: 400 * Self.day, now: now),  // beyond every bound: +Inf only
                // Not current: superseded, revoked, expired, an IDevID, notAfter exactly now.
                Self.credential(5, device: "a-2", left: 3 * Self.day, now: now, status: .superseded),
                Self.credential(6, device: "a-3", left: 3 * Self.day, now: now, status: .revoked),
                Self.credential(7, device: "a-3", left: -Self.day, now: now),
                Self.credential(8, device: "a-2", left: 3 * Self.day, now: now, kind: .idevid),
                Self.credential(9, device: "a-4", left: 0, now: now),
            ]
            for credential in credentials {
                try await store.insertCredential(
                    credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            }
            let health = try await store.fleetHealth(now: now, upperBounds: Self.bounds)
            let acme = Fixture.tenantID("acme")
            let other = Fixture.tenantID("other")
            #expect(
                health.devices == [
                    .init(tenant: acme, state: .active, count: 2), .init(tenant: acme, state: .manufactured, count: 1),
                    .init(tenant: acme, state: .suspended, count: 1), .init(tenant: other, state: .active, count: 1),
                ])
            #expect(try await store.deviceStateCounts() == health.devices)
            let acmeExpiry = try #require(health.expiry[acme])
            #expect(acmeExpiry.cumulative == [1, 2, 2, 3])
            #expect(acmeExpiry.count == 3)
            #expect(acmeExpiry.sum == Self.day + (Self.day + 1) + 20 * Self.day)
            let otherExpiry = try #require(health.expiry[other])
            #expect(otherExpiry.cumulative == [0, 0, 0, 0])
            #expect(otherExpiry.count == 1)
            #expect(otherExpiry.sum == 400 * Self.day)
            #expect(health.expiry.count == 2)
        }
    }
}
