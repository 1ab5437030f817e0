@testable import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Which earlier CRL partition counts are still published, as pure logic on injected times.
@Suite("CRL partition history")
struct PartitionHistoryTests {
    let start = Date(timeIntervalSince1970: 1_790_000_000)
    let day: TimeInterval = 86_400

    @Test func earlierCountsArePublishedUntilTheirCertificatesExpireThenForgotten() {
        var history = PartitionHistory()
        let retention = 31 * day
        history.record(1, at: start, retention: retention)
        #expect(history.uses.isEmpty, "one complete CRL names no partition")
        history.record(4, at: start, retention: retention)
        history.record(4, at: start.addingTimeInterval(2 * day), retention: retention)
        history.record(8, at: start.addingTimeInterval(10 * day), retention: retention)
        #expect(history.uses.map(\.partitions) == [4, 8])
        let fourUntil = start.addingTimeInterval(33 * day + PartitionHistory.step)
        #expect(history.uses.first?.publishUntil == fourUntil, "the last use counts, rounded up one step")

        #expect(history.earlierCounts(current: 8, now: start.addingTimeInterval(20 * day)) == [4])
        #expect(history.earlierCounts(current: 8, now: fourUntil.addingTimeInterval(-1)) == [4])
        #expect(history.earlierCounts(current: 8, now: fourUntil).isEmpty)
        #expect(history.uses.map(\.partitions) == [8], "a forgotten count is gone from the file too")
        #expect(history.earlierCounts(current: 8, now: start.addingTimeInterval(400 * day)).isEmpty)
        #expect(history.uses.map(\.partitions) == [8], "the current count is never forgotten")
        // Back to one complete CRL: 8 is now an earlier count.
        #expect(history.earlierCounts(current: 1, now: start.addingTimeInterval(34 * day)) == [8])
    }

    @Test func aShorterLifetimeLaterDoesNotCutShortCertificatesAlreadyIssued() {
        var history = PartitionHistory()
        history.record(4, at: start, retention: 90 * day)
        history.record(4, at: start.addingTimeInterval(day), retention: 7 * day)
        #expect(history.earlierCounts(current: 8, now: start.addingTimeInterval(60 * day)) == [4])
    }

    @Test func usesWithinOneStepDoNotChangeTheHistory() {
        var history = PartitionHistory()
        history.record(4, at: start, retention: 31 * day)
        let first = history
        history.record(4, at: start.addingTimeInterval(PartitionHistory.step - 1), retention: 31 * day)
        #expect(history == first, "no write for a rebuild within the hour")
        history.record(4, at: start.addingTimeInterval(PartitionHistory.step + 1), retention: 31 * day)
        #expect(history != first)
    }

    @Test func certificatesThatNeverExpireKeepEveryCount() {
        var history = PartitionHistory()
        history.record(2, at: start, retention: 31 * day)
        history.record(2, at: start.addingTimeInterval(day), retention: nil)
        history.record(16, at: start, retention: nil)
        #expect(history.earlierCounts(current: 16, now: start.addingTimeInterval(10_000 * day)) == [2])
    }

    @Test func savedAndLoadedAlikeAndAnUnreadableFileIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("partitions.json")
        #expect(try PartitionHistory.load(path) == PartitionHistory(), "no file yet")
        var history = PartitionHistory()
        history.record(4, at: start, retention: 31 * day)
        history.record(64, at: start.addingTimeInterval(day), retention: nil)
        try history.save(path)
        #expect(try PartitionHistory.load(path) == history)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o644)

        for bad in [
            "not json", #"{"uses":[{"partitions":1,"publishUntil":0}]}"#,
            #"{"uses":[{"partitions":5000,"publishUntil":0}]}"#,
        ] {
            _ = FileManager.default.createFile(atPath: path, contents: Data(bad.utf8))
            #expect(throws: (any Error).self, "\(bad)") { try PartitionHistory.load(path) }
        }
    }
}
