import Foundation

/// Stores keep time as integer milliseconds since 1970 (portable to every SQL backend, and the precision the
/// audit chain hashes). Every date handed to a store comes back rounded to the millisecond.
enum StoreTime {
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
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
