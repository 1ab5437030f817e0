import DevIDCore
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Logging
import Synchronization
import Testing

/// ``HealthHistory``'s reads against its own flushes: a series merges the registry's rows with what is not flushed
/// yet, and must not see an event in both, or in neither, while a flush moves it from one to the other.
@Suite("Health history: reads during flushes")
struct HealthHistoryFlushTests {
    final class Recorded: Sendable {
        let count = Atomic<Int>(0)
    }

    @Test("a series read while the history flushes counts each event exactly once")
    func readsDuringFlushes() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-health-history")
        defer { directory.remove() }
        // A file registry: each flush is a synced transaction, a window a read can fall into.
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        defer { try? store.close() }
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
        let history = HealthHistory(store: store, clock: clock, logger: Logger(label: "health-history-test"))
        let recorded = Recorded()
        let from = clock.now().addingTimeInterval(-3_600)
        let to = clock.now().addingTimeInterval(3_600)
        let wrong = try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask {
                for _ in 0..<300 {
                    history.record(.authFailures, tenant: nil, "est", "revoked")
                    recorded.count.add(1, ordering: .sequentiallyConsistent)
                    await history.flush()
                }
                return []
            }
            group.addTask {
                var wrong: [String] = []
                for _ in 0..<300 {
                    let before = recorded.count.load(ordering: .sequentiallyConsistent)
                    let total = try await history.counts(.authFailures, from: from, to: to).reduce(0) { $0 + $1.count }
                    let after = recorded.count.load(ordering: .sequentiallyConsistent)
                    if total < before || total > after { wrong.append("\(total) read between \(before) and \(after)") }
                }
                return wrong
            }
            return try await group.reduce([], +)
        }
        #expect(wrong.isEmpty, "\(wrong.count) reads off: \(wrong.prefix(5))")
        let final = try await history.counts(.authFailures, from: from, to: to).reduce(0) { $0 + $1.count }
        #expect(final == 300)
    }
}
