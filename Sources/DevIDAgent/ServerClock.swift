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
        /// The boot it was measured in and the time since that boot then (``BootClock``); nil when unknown (a sample
        /// saved by an older agent, or a clock without a boot clock).
        public var boot: BootClock.Reading?

        public init(skew: TimeInterval, measuredAt: Date, boot: BootClock.Reading? = nil) {
            self.skew = skew
            self.measuredAt = measuredAt
            self.boot = boot
        }
    }

    /// The device's own clock.
    public let local: any WallClock
    /// Time since boot, which nobody sets: tells a device clock that was set since a sample from one that ran.
    let bootClock: BootClock?
    private let state: Mutex<Sample?>

    /// How far the device clock may move against the time since boot before a sample counts as stale: more than
    /// drift and NTP's slewing over weeks, less than any step a clock is set by.
    static let maximumClockStep: TimeInterval = 120

    /// - Parameters:
    ///   - local: the device's clock.
    ///   - known: the last skew measured (kept across restarts in the state directory), if any.
    ///   - bootClock: the time since boot; by default the system's when `local` is the system clock, else none (a
    ///     test's manual clock moves by days where no time since boot passes).
    public init(local: any WallClock, known: Sample? = nil, bootClock: BootClock? = nil) {
        self.local = local
        self.bootClock = bootClock ?? (local is SystemWallClock ? BootClock.system : nil)
        self.state = Mutex(known)
    }

    /// The last measurement, or nil if the server was never heard from (or the one there was went stale).
    public var sample: Sample? {
        let localNow = local.now()
        let reading = bootClock?.read()
        return state.withLock { sample in
            if let current = sample, Self.isStale(current, localNow: localNow, boot: reading) { sample = nil }
            return sample
        }
    }

    /// server − local in seconds; 0 while unknown.
    public var skew: TimeInterval { sample?.skew ?? 0 }

    /// The local time corrected by the last known skew.
    ///
    /// A skew is dropped once the device clock was *set* since it was measured, in the same boot: then the device
    /// clock moved against the time since boot by more than ``maximumClockStep``. A device that booted at 1970 (an
    /// RTC reset) learns a skew of decades from its first answer; when NTP then sets its clock, that skew would throw
    /// the corrected time decades ahead, where every certificate has expired and no answer could correct it. So the
    /// device clock alone counts again, until the next answer measures anew (and a device clock before every
    /// certificate it holds still makes ``ESTClient`` probe the server's time). A sample of another boot is kept: a
    /// clock that resets at every boot resets the same way.
    public func now() -> Date {
        local.now().addingTimeInterval(skew)
    }

    static func isStale(_ sample: Sample, localNow: Date, boot: BootClock.Reading?) -> Bool {
        guard let then = sample.boot, let boot, then.bootID == boot.bootID else { return false }
        let wall = localNow.timeIntervalSince(sample.measuredAt)
        let real = boot.uptime - then.uptime
        return abs(wall - real) > maximumClockStep
    }

    /// Records the server's time from a response that just arrived.
    ///
    /// - Parameters:
    ///   - serverTime: the server's stamp.
    ///   - wholeSeconds: the stamp was truncated to whole seconds (so the true time is up to 1 s later).
    public func observe(serverTime: Date, wholeSeconds: Bool) {
        let localNow = local.now()
        let estimate = wholeSeconds ? serverTime.addingTimeInterval(0.5) : serverTime
        let sample = Sample(skew: estimate.timeIntervalSince(localNow), measuredAt: localNow, boot: bootClock?.read())
        state.withLock { $0 = sample }
    }
}

/// The time since the machine booted, with the boot's id: a clock nobody sets, against which a set wall clock shows.
public struct BootClock: Sendable {
    public struct Reading: Sendable, Hashable, Codable {
        /// Which boot (`/proc/sys/kernel/random/boot_id`).
        public var bootID: String
        /// Seconds since that boot.
        public var uptime: TimeInterval

        public init(bootID: String, uptime: TimeInterval) {
            self.bootID = bootID
            self.uptime = uptime
        }
    }

    private let reader: @Sendable () -> Reading?

    public init(_ reader: @escaping @Sendable () -> Reading?) {
        self.reader = reader
    }

    public func read() -> Reading? { reader() }

    /// The machine's: Foundation's `systemUptime` (the monotonic clock since boot), with the boot's id, read once (it
    /// cannot change while a process runs); nil where the id cannot be read. A suspended machine's monotonic clock
    /// stands still while its wall clock runs: the skew is then dropped as if the clock had been set, and measured
    /// again at the next answer, which costs nothing.
    public static let system: BootClock = {
        let id = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return BootClock {
            guard let id, !id.isEmpty else { return nil }
            return Reading(bootID: id, uptime: ProcessInfo.processInfo.systemUptime)
        }
    }()
}
