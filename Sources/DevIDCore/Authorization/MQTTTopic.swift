/// MQTT topic names and topic filters, validated and matched exactly as MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7 define
/// them.
///
/// - A topic name or filter is 1–65535 bytes of UTF-8 and contains no U+0000.
/// - Levels are separated by `/`; empty levels are allowed (`a//b`, `/a`, `a/`).
/// - `+` matches exactly one level (possibly empty) and must fill its level; `#` matches the parent level and any
///   number of child levels, must fill its level and be the last one. Topic names contain neither.
/// - A filter whose first level is a wildcard does not match a topic name that begins with `$` (`$SYS/...`).
///
/// Pure value logic on byte slices: no allocation beyond splitting into levels.
public enum MQTTTopic {
    /// The largest topic the protocol can carry (a two-byte length prefix).
    public static let maximumBytes = 65_535

    /// One level of a topic filter.
    public enum Level: Sendable, Hashable {
        case literal(Substring)
        /// `+`
        case single
        /// `#`
        case multi
    }

    /// Why a topic name or filter is not valid, as one line.
    public static func nameProblem(_ name: String) -> String? {
        if let problem = commonProblem(name) { return problem }
        if name.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") }) {
            return "a topic name may not contain the wildcards + or #"
        }
        return nil
    }

    public static func filterProblem(_ filter: String) -> String? {
        if let problem = commonProblem(filter) { return problem }
        let levels = split(filter)
        for (index, level) in levels.enumerated() {
            let hasPlus = level.utf8.contains(UInt8(ascii: "+"))
            let hasHash = level.utf8.contains(UInt8(ascii: "#"))
            if hasPlus && level != "+" { return "the wildcard + must fill a whole level" }
            if hasHash && level != "#" { return "the wildcard # must fill a whole level" }
            if level == "#" && index != levels.count - 1 { return "the wildcard # must be the last level" }
        }
        return nil
    }

    public static func isValidName(_ name: String) -> Bool { nameProblem(name) == nil }
    public static func isValidFilter(_ filter: String) -> Bool { filterProblem(filter) == nil }

    /// The levels of a topic, empty ones included (`"/a/"` is `["", "a", ""]`).
    ///
    /// Split at every byte `/`, as brokers split: a topic is UTF-8 bytes, not Characters, and a `/` followed by a
    /// combining mark (`"a/\u{301}b"`) is one Character but still two levels.
    public static func split(_ topic: String) -> [Substring] {
        var levels: [Substring] = []
        var start = topic.startIndex
        for index in topic.utf8.indices where topic.utf8[index] == UInt8(ascii: "/") {
            levels.append(topic[start..<index])
            start = topic.utf8.index(after: index)
        }
        levels.append(topic[start...])
        return levels
    }

    /// Whether two literal levels are the same bytes. (`==` on strings would also equate canonically equivalent
    /// spellings, `é` and `e\u{301}`, which a broker treats as different topics.)
    static func sameBytes(_ a: Substring, _ b: Substring) -> Bool {
        a.utf8.elementsEqual(b.utf8)
    }

    /// The levels of a valid filter.
    public static func filterLevels(_ filter: String) -> [Level] {
        split(filter).map { level in
            switch level {
            case "+": .single
            case "#": .multi
            default: .literal(level)
            }
        }
    }

    /// Whether `filter` matches the topic `name`. Both must be valid; an invalid one never matches.
    public static func matches(filter: String, name: String) -> Bool {
        guard isValidFilter(filter), isValidName(name) else { return false }
        return covers(filterLevels(filter), filterLevels(name))
    }

    /// Whether every topic name that `requested` matches is also matched by `allowed`: a subscription to
    /// `requested` can never deliver a message `allowed` would not. Both must be valid filters.
    public static func isSubset(_ requested: String, of allowed: String) -> Bool {
        guard isValidFilter(requested), isValidFilter(allowed) else { return false }
        return covers(filterLevels(allowed), filterLevels(requested))
    }

    /// Whether the filter `allowed` covers the filter (or topic name) `requested`, level by level.
    ///
    /// A topic name is a filter without wildcards, so this is also how a name is matched.
    public static func covers(_ allowed: [Level], _ requested: [Level]) -> Bool {
        var index = 0
        while true {
            if index == allowed.count { return index == requested.count }
            if case .multi = allowed[index] {
                // `#` covers the parent level and everything below it; but a leading wildcard never reaches `$`.
                if index == 0, startsWithDollar(requested) { return false }
                return true
            }
            if index == requested.count { return false }
            switch (allowed[index], requested[index]) {
            case (.single, .multi):
                // `+/#` matches every topic `#` does: each has at least one level, and neither reaches `$` topics.
                // Deeper down, `a/+/#` misses `a`, which `a/#` matches.
                return index == 0 && allowed.count == 2 && allowed[1] == .multi
            case (_, .multi):
                return false
            case (.single, .single):
                break
            case (.literal, .single):
                return false
            case (.single, .literal):
                if index == 0, startsWithDollar(requested) { return false }
            case (.literal(let a), .literal(let r)):
                if !sameBytes(a, r) { return false }
            case (.multi, _):
                return true  // handled above
            }
            index += 1
        }
    }

    /// Whether some topic name matches both filters `a` and `b` (level by level: a `#` in either matches the rest,
    /// a `+` any one level, literals must be equal).
    public static func overlaps(_ a: [Level], _ b: [Level]) -> Bool {
        var index = 0
        while true {
            let aEnded = index == a.count
            let bEnded = index == b.count
            if aEnded && bEnded { return true }
            // `#` also matches its parent level, so it matches wherever the other filter has ended.
            if !aEnded, a[index] == .multi { return true }
            if !bEnded, b[index] == .multi { return true }
            if aEnded || bEnded { return false }
            if case .literal(let x) = a[index], case .literal(let y) = b[index], !sameBytes(x, y) { return false }
            index += 1
        }
    }

    private static func startsWithDollar(_ levels: [Level]) -> Bool {
        guard case .literal(let first)? = levels.first else { return false }
        return first.utf8.first == UInt8(ascii: "$")
    }

    private static func commonProblem(_ topic: String) -> String? {
        let count = topic.utf8.count
        if count == 0 { return "a topic must not be empty" }
        if count > maximumBytes { return "a topic may be at most \(maximumBytes) bytes" }
        if topic.utf8.contains(0) { return "a topic may not contain U+0000" }
        return nil
    }
}

/// An MQTT 5 shared subscription, `$share/<ShareName>/<filter>` (MQTT 5.0 §4.8.2).
public struct SharedSubscription: Sendable, Hashable {
    public var shareName: Substring
    /// The filter the subscription is really for; authorization applies to it.
    public var filter: Substring

    /// Parses `$share/<name>/<filter>`; nil if `topic` is not a shared subscription, a reason if it is malformed.
    public static func parse(_ topic: String) -> Result<SharedSubscription, SharedSubscriptionError>? {
        // Bytes, as brokers read it (see ``MQTTTopic/split(_:)``).
        let prefix = "$share/".utf8
        guard topic.utf8.starts(with: prefix) else { return nil }
        let restStart = topic.utf8.index(topic.startIndex, offsetBy: prefix.count)
        guard let slash = topic.utf8[restStart...].firstIndex(of: UInt8(ascii: "/")) else { return .failure(.init()) }
        let name = topic[restStart..<slash]
        let filter = topic[topic.utf8.index(after: slash)...]
        guard !name.isEmpty, !filter.isEmpty, !name.utf8.contains(UInt8(ascii: "+")),
            !name.utf8.contains(UInt8(ascii: "#"))
        else {
            return .failure(.init())
        }
        return .success(SharedSubscription(shareName: name, filter: filter))
    }
}

public struct SharedSubscriptionError: Error, Sendable, Hashable {
    public init() {}
    public var reason: String { "a shared subscription is $share/<name>/<filter>, the name without wildcards" }
}
