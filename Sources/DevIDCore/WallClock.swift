public import Foundation

/// The source of "now" for every piece of lifecycle code.
///
/// DevID never calls `Date()` in lifecycle code: it asks a `WallClock`, so tests and the fleet
/// simulator can move time by months in microseconds. Production passes ``SystemWallClock``.
public protocol WallClock: Sendable {
    func now() -> Date
}

/// The machine's real clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that only moves when told to; for tests and the fleet simulator.
public final class ManualWallClock: WallClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    public init(_ start: Date = Date(timeIntervalSince1970: 1_790_000_000)) {
        self.current = start
    }

    public func now() -> Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    public func set(_ date: Date) {
        lock.lock()
        current = date
        lock.unlock()
    }

    public func advance(by interval: TimeInterval) {
        lock.lock()
        current = current.addingTimeInterval(interval)
        lock.unlock()
    }
}
