import NIOConcurrencyHelpers

/// Counts the open connections of one listener, in total and per source address, under a lock (child channels
/// of one listener live on several event loops).
final class ConnectionCounter: Sendable {
    private struct Counts {
        var total = 0
        var byAddress: [String: Int] = [:]
    }

    private let counts = NIOLockedValueBox(Counts())
    let maxConnections: Int
    let maxPerAddress: Int

    init(maxConnections: Int, maxPerAddress: Int) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
    }

    /// Takes a slot for a connection from `address`; false when a cap is reached (nothing is taken then).
    func acquire(_ address: String) -> Bool {
        counts.withLockedValue { counts in
            if maxConnections > 0, counts.total >= maxConnections { return false }
            let current = counts.byAddress[address, default: 0]
            if maxPerAddress > 0, current >= maxPerAddress { return false }
            counts.total += 1
            counts.byAddress[address] = current + 1
            return true
        }
    }

    func release(_ address: String) {
        counts.withLockedValue { counts in
            counts.total -= 1
            let remaining = counts.byAddress[address, default: 1] - 1
            counts.byAddress[address] = remaining > 0 ? remaining : nil
        }
    }

    var open: Int { counts.withLockedValue { $0.total } }
}
