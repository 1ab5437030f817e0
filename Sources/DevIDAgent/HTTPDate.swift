public import Foundation

/// HTTP dates (RFC 9110 §5.6.7): the `Date` header, and `Retry-After` in its date form.
public enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Parses the IMF-fixdate form every current server sends: `Sun, 06 Nov 1994 08:49:37 GMT`.
    ///
    /// The numbers have the grammar's fixed digit counts (RFC 9110 §5.6.7: `2DIGIT` day, `4DIGIT` year, `2DIGIT`
    /// each of hour, minute, second): a longer year is refused rather than handed to the calendar, which wraps
    /// `9223372036854775807` round to a date in year 2.
    public static func parse(_ text: String) -> Date? {
        let fields = text.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 6, fields[0].hasSuffix(","), fields[5] == "GMT",
            let day = digits(fields[1], count: 2), let monthIndex = months.firstIndex(of: String(fields[2])),
            let year = digits(fields[3], count: 4)
        else { return nil }
        let clock = fields[4].split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, let hour = digits(clock[0], count: 2), let minute = digits(clock[1], count: 2),
            let second = digits(clock[2], count: 2),
            (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second)
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        let components = DateComponents(year: year, month: monthIndex + 1, day: day, hour: hour, minute: minute)
        // The calendar rolls a day the month does not have over (`31 Feb` would be 3 March): refuse it instead.
        guard let minuteStart = calendar.date(from: components),
            calendar.dateComponents([.year, .month, .day], from: minuteStart)
                == DateComponents(year: year, month: monthIndex + 1, day: day)
        else { return nil }
        return minuteStart.addingTimeInterval(TimeInterval(second))
    }

    /// The value of exactly `count` ASCII digits, or nil.
    private static func digits(_ text: Substring, count: Int) -> Int? {
        guard text.utf8.count == count, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int(text)
    }

    /// `DevID-Time` (RFC 3339 in UTC, e.g. `2026-11-25T15:40:00Z`, fractional seconds allowed): the server's
    /// injected clock. `wholeSeconds` is true when the stamp has no fraction (it was truncated).
    public static func parseRFC3339(_ text: String) -> (date: Date, wholeSeconds: Bool)? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.count <= 40 else { return nil }
        if let date = try? Date(trimmed, strategy: Date.ISO8601FormatStyle()) { return (date, true) }
        if let date = try? Date(trimmed, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            return (date, false)
        }
        return nil
    }

    /// `Retry-After` as seconds: delay-seconds as given, an HTTP date relative to the response's `Date` (so a skewed
    /// device clock does not matter). Nil if absent or unreadable.
    public static func retryAfterSeconds(_ value: String?, serverDate: Date?) -> Int? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return max(0, seconds) }
        guard let date = parse(value), let serverDate else { return nil }
        return max(0, Int(date.timeIntervalSince(serverDate).rounded(.up)))
    }
}
