public import DevIDCore
public import Foundation

/// What `GET /metrics` reads from the registry at scrape time, in two aggregate queries: devices by tenant and
/// state, and the time left to `notAfter` of every current LDevID, per tenant, as a cumulative histogram.
public struct FleetHealth: Sendable, Hashable {
    /// One tenant's current LDevIDs (`active`, `notAfter` after the scrape time) by time left.
    public struct ExpiryHistogram: Sendable, Hashable {
        /// `cumulative[i]` counts the credentials with at most `upperBounds[i]` seconds left.
        public var cumulative: [Int]
        /// Every current LDevID of the tenant (the `+Inf` bucket).
        public var count: Int
        /// The seconds left, summed over `count` credentials.
        public var sum: Double

        public init(cumulative: [Int], count: Int, sum: Double) {
            self.cumulative = cumulative
            self.count = count
            self.sum = sum
        }
    }

    public struct DeviceCount: Sendable, Hashable {
        public var tenant: TenantID
        public var state: DeviceState
        public var count: Int

        public init(tenant: TenantID, state: DeviceState, count: Int) {
            self.tenant = tenant
            self.state = state
            self.count = count
        }
    }

    /// Non-zero counts only, sorted by tenant then state.
    public var devices: [DeviceCount]
    /// The bucket bounds the histograms were counted with, in seconds, ascending.
    public var upperBounds: [TimeInterval]
    /// Tenants without a current LDevID are absent.
    public var expiry: [TenantID: ExpiryHistogram]

    public init(devices: [DeviceCount], upperBounds: [TimeInterval], expiry: [TenantID: ExpiryHistogram]) {
        self.devices = devices
        self.upperBounds = upperBounds
        self.expiry = expiry
    }
}
