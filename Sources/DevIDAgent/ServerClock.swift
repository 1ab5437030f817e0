public import DevIDCore
public import Foundation
import Synchronization

/// The device's best estimate of the server's time: the local clock plus the skew measured from the server's
/// answers.
///
/// Every response on DevID's device listener carries `DevID-Time` (RFC 3339, the server's clock); ``ESTClient``
/// reports each one here. `skew = server − local`, measured when the response arrives, and ``now()`` is
/// `local + skew`. A device whose clock reads 1970 after an RTC reset therefore schedules, validates and decides on
/// the server's time after the first exchange, and a certificate is never thrown away as "expired" on a clock that
/// is known to be off.
///
/// Whole-second stamps are taken as the middle of their second (`+0.5 s`), so the estimate is within half a second
/// of the server's clock plus the network delay.
public final class ServerClock: WallClock, Sendable {
    /// One measurement.
    public struct Sample: Sendable, Hashable, Codable {
        /// server − local, in seconds.
        public var skew: TimeInterval
        /// The local clock when it was measured.
        public var measuredAt: Date

        public init(skew: TimeInterval, measuredAt: Date) {
            self.skew = skew
            self.measuredAt = measuredAt
        }
    }

    /// The device's own clock.
    public let local: any WallClock
    private let state: Mutex<Sample?>

    /// - Parameters:
    ///   - local: the device's clock.
    ///   - known: the last skew measured (kept across restarts in the state directory), if any.
    public init(local: any WallClock, known: Sample? = nil) {
        self.local = local
        self.state = Mutex(known)
    }

    /// The last measurement, or nil if the server was never heard from.
    public var sample: Sample? { state.withLock { $0 } }

    /// server − local in seconds; 0 while unknown.
    public var skew: TimeInterval { sample?.skew ?? 0 }

    /// The local time corrected by the last known skew.
    public func now() -> Date {
        local.now().addingTimeInterval(skew)
    }

    /// Records the server's time from a response that just arrived.
    ///
    /// - Parameters:
    ///   - serverTime: the server's stamp.
    ///   - wholeSeconds: the stamp was truncated to whole seconds (so the true time is up to 1 s later).
    public func observe(serverTime: Date, wholeSeconds: Bool) {
        let localNow = local.now()
        let estimate = wholeSeconds ? serverTime.addingTimeInterval(0.5) : serverTime
        let sample = Sample(skew: estimate.timeIntervalSince(localNow), measuredAt: localNow)
        state.withLock { $0 = sample }
    }
}
