import DevIDAgent
import Foundation

/// Targets for what the agent reads from server responses.
enum AgentTargets {
    static let serverDate = Date(timeIntervalSince1970: 1_764_979_200)  // 2025-12-06T00:00:00Z

    /// `Date`, `Retry-After` and `DevID-Time` headers. The input is a header value, optionally followed by a line
    /// break and the response's `Date` header.
    static let httpDate = FuzzTarget(
        name: "http-date", maximumLength: 256,
        summary: "HTTP dates, Retry-After (seconds or date) and DevID-Time: parse; a wait is never negative"
    ) { bytes throws(FuzzFailure) in
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let value = lines[0]
        let dateHeader = lines.count > 1 ? HTTPDate.parse(lines[1]) : serverDate
        if let date = HTTPDate.parse(value) {
            try require(date.timeIntervalSince1970.isFinite, "http-date", "a parsed date is not finite")
            // The date is the one written: its day, month and year are the text's.
            let fields = value.split(separator: " ")
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(secondsFromGMT: 0)!
            // A leap second (:60) reads as the next minute's first second; step back into the written minute.
            let second = Int(fields[4].split(separator: ":").last ?? "") ?? 0
            let shown = calendar.dateComponents([.year, .day], from: second == 60 ? date.addingTimeInterval(-1) : date)
            try require(
                shown.year == Int(fields[3]) && shown.day == Int(fields[1]), "http-date",
                "the date parsed is not the date written")
        }
        _ = HTTPDate.parseRFC3339(value)
        if let seconds = HTTPDate.retryAfterSeconds(value, serverDate: dateHeader) {
            try require(seconds >= 0, "http-date", "a negative Retry-After")
        }
    }
}
