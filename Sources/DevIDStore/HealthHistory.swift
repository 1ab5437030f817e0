public import DevIDCore
public import Foundation

/// One hour's count of one health series: what `GET /v1/health/series` and the dashboard read when no Prometheus
/// server keeps the history. A series is a metric and its two labels (for `auth_failures`: the stage and the
/// reason; for `enrollments`: the kind and the result; for `revocations`: the scope and the reason), per tenant.
///
/// Every label comes from a fixed set or from the registry's tenants, so an hour holds at most a few hundred rows
/// and the table stays bounded: counts older than the retention (400 days) are deleted as new ones are added.
public struct HealthCount: Sendable, Hashable {
    /// The start of the hour (UTC), a whole multiple of 3,600 seconds since 1970.
    public var hour: Date
    public var metric: String
    /// A tenant id, or `unknown` when the requester proved none.
    public var tenant: String
    public var first: String
    public var second: String
    public var count: Int

    public init(hour: Date, metric: String, tenant: String, first: String, second: String, count: Int) {
        self.hour = hour
        self.metric = metric
        self.tenant = tenant
        self.first = first
        self.second = second
        self.count = count
    }

    /// The start of the hour that holds `date`.
    public static func hour(of date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
    }
}

/// A device's first LDevID: how long its onboarding took (registration to first certificate).
public struct OnboardingTime: Sendable, Hashable {
    public var device: DeviceID
    public var tenant: TenantID
    public var registeredAt: Date
    public var firstIssuedAt: Date

    public init(device: DeviceID, tenant: TenantID, registeredAt: Date, firstIssuedAt: Date) {
        self.device = device
        self.tenant = tenant
        self.registeredAt = registeredAt
        self.firstIssuedAt = firstIssuedAt
    }

    public var seconds: TimeInterval { max(0, firstIssuedAt.timeIntervalSince(registeredAt)) }
}

/// Active devices that have not been seen (check-in, renewal, first use) since a time: the `stale_device` check.
public struct StaleDevices: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public var device: DeviceID
        public var tenant: TenantID
        /// The last check-in or authentication; nil when the device was never seen (its registration counts).
        public var lastSeen: Date?

        public init(device: DeviceID, tenant: TenantID, lastSeen: Date?) {
            self.device = device
            self.tenant = tenant
            self.lastSeen = lastSeen
        }
    }

    /// Every stale device.
    public var count: Int
    /// The longest unseen first, at most the limit asked for.
    public var oldest: [Entry]

    public init(count: Int, oldest: [Entry]) {
        self.count = count
        self.oldest = oldest
    }
}
