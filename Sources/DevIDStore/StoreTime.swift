import Foundation

/// Stores keep time as integer milliseconds since 1970 (portable to every SQL backend, and the precision the
/// audit chain hashes). Every date handed to a store comes back rounded to the millisecond.
enum StoreTime {
    /// Saturating: a date beyond ±292 million years (only a caller's unchecked input makes one) is the nearest
    /// representable time rather than a trap that would take the server down.
    static func milliseconds(_ date: Date) -> Int64 {
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded()
        guard milliseconds < 0x1p63 else { return .max }  // NaN too
        guard milliseconds >= -0x1p63 else { return .min }
        return Int64(milliseconds)
    }

    static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    static func normalized(_ date: Date) -> Date {
        self.date(milliseconds: milliseconds(date))
    }

    static func normalized(_ date: Date?) -> Date? {
        date.map { normalized($0) }
    }
}
