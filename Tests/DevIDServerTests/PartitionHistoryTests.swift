@testable import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Which earlier CRL partition counts are still published, as pure logic on injected times.
@Suite("CRL partition history")
struct PartitionHistoryTests {
    let start = Date(timeIntervalSince1970: 1_790_000_000)
    let day: TimeInterval = 86_400

    @Test func earlierCountsAreKeptForTheRetentionThenForgotten() {
        var history = PartitionHistory()
        history.record(1, at: start)
        #expect(history.uses.isEmpty, "one complete CRL names no partition")
        history.record(4, at: start)
        history.record(8, at: start.addingTimeInterval(10 * day))
        history.record(4, at: start.addingTimeInterval(2 * day))
        #expect(history.uses.map(\.partitions) == [4, 8])
        #expect(history.uses.first?.lastUsed == start.addingTimeInterval(2 * day), "the last use counts")

        let retention = 31 * day
        var now = start.addingTimeInterval(20 * day)
        #expect(history.earlierCounts(current: 8, now: now, retention: retention) == [4])
        now = start.addingTimeInterval(33 * day)
        #expect(history.earlierCounts(current: 8, now: now, retention: retention).isEmpty)
        #expect(history.uses.map(\.partitions) == [8], "a forgotten count is gone from the file too")
        #expect(history.earlierCounts(current: 8, now: start.addingTimeInterval(400 * day), retention: retention).isEmpty)
        #expect(history.uses.map(\.partitions) == [8], "the current count is never forgotten")
        // Back to one complete CRL: 8 is now an earlier count.
        #expect(history.earlierCounts(current: 1, now: start.addingTimeInterval(34 * day), retention: retention) == [8])
    }

    @Test func certificatesThatNeverExpireKeepEveryCount() {
        var history = PartitionHistory()
        history.record(2, at: start)
        history.record(16, at: start)
        #expect(history.earlierCounts(current: 16, now: start.addingTimeInterval(10_000 * day), retention: nil) == [2])
    }

    @Test func savedAndLoadedAlikeAndAnUnreadableFileIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("partitions.json")
        #expect(try PartitionHistory.load(path) == PartitionHistory(), "no file yet")
        var history = PartitionHistory()
        history.record(4, at: start)
        history.record(64, at: start.addingTimeInterval(day))
        try history.save(path)
        #expect(try PartitionHistory.load(path) == history)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o644)

        for bad in ["not json", #"{"uses":[{"partitions":1,"lastUsed":0}]}"#, #"{"uses":[{"partitions":5000,"lastUsed":0}]}"#] {
            _ = FileManager.default.createFile(atPath: path, contents: Data(bad.utf8))
            #expect(throws: (any Error).self, "\(bad)") { try PartitionHistory.load(path) }
        }
    }
}
