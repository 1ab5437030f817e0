import Foundation

/// Counts failures by group over a window, for audit in aggregate (``AnonymousFailures``, ``RepeatedDecisions``): the
/// first of each group is new (the caller writes it at once), the rest are counted; ``drain(now:)`` returns the groups
/// that repeated and starts a new window. At most `maximumKeys` groups are kept per window; failures beyond them are
/// counted per action only.
struct FailureWindow<Key: Hashable> {
    let maximumKeys: Int
    private var counts: [Key: Int] = [:]
    private var order: [Key] = []
    private var overflow: [String: Int] = [:]
    private var start: Date?

    init(maximumKeys: Int) {
        self.maximumKeys = maximumKeys
    }

    /// Whether `key` is new in this window (and kept): the caller writes it.
    mutating func count(_ key: Key, action: String, now: Date) -> Bool {
        if start == nil { start = now }
        if let seen = counts[key] {
            counts[key] = seen + 1
            return false
        }
        guard counts.count < maximumKeys else {
            overflow[action, default: 0] += 1
            return false
        }
        counts[key] = 1
        order.append(key)
        return true
    }

    /// Failures counted in this window and not yet written.
    var pending: Int {
        counts.values.reduce(0) { $0 + max(0, $1 - 1) } + overflow.values.reduce(0, +)
    }

    /// The window's length in whole seconds, every group that repeated (with its count, the first included) in the
    /// order first seen, and the overflow per action; nil when nothing was counted. Starts a new window.
    mutating func drain(now: Date) -> (seconds: Int, groups: [(Key, Int)], overflow: [(String, Int)])? {
        guard let start else { return nil }
        let seconds = max(0, Int(now.timeIntervalSince(start).rounded()))
        let groups = order.compactMap { key in counts[key].map { (key, $0) } }.filter { $0.1 > 1 }
        let others = overflow.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        counts = [:]
        order = []
        overflow = [:]
        self.start = nil
        return (seconds, groups, others)
    }
}
