import DevIDPKI
import Foundation

/// The CRL partition counts the issuing CA has written into certificates, and until when each must be published,
/// kept in `DATA/crl/partitions.json`.
///
/// A partition's name carries its count (`issuing-4-1`), and a certificate keeps the CRL Distribution Point it was
/// issued with. After `crl.partitions` changes, the certificates issued under an earlier count still name that
/// count's partitions, so the publisher goes on signing them until every such certificate has expired. That time
/// is fixed when the count is used, from the LDevID lifetime and CRL validity of that moment, so lowering either
/// later does not cut short the certificates already issued.
struct PartitionHistory: Sendable, Equatable, Codable {
    struct Use: Sendable, Equatable, Codable {
        var partitions: Int
        /// Until when this count's partitions are published; nil when its certificates never expire.
        var publishUntil: Date?
    }

    /// A use extends `publishUntil` in steps of this size, so the file is written about once an hour and not at
    /// every CRL rebuild.
    static let step: TimeInterval = 3_600

    private(set) var uses: [Use] = []

    /// `partitions` is in use at `now` for certificates that are valid for at most `retention` more (nil:
    /// forever). A count of 1 names no partition and is not recorded.
    mutating func record(_ partitions: Int, at now: Date, retention: TimeInterval?) {
        guard partitions > 1 else { return }
        let needed = retention.map { now.addingTimeInterval($0) }
        if let index = uses.firstIndex(where: { $0.partitions == partitions }) {
            guard let stored = uses[index].publishUntil else { return }
            guard let needed else {
                uses[index].publishUntil = nil
                return
            }
            if needed > stored { uses[index].publishUntil = needed.addingTimeInterval(Self.step) }
        } else {
            uses.append(Use(partitions: partitions, publishUntil: needed.map { $0.addingTimeInterval(Self.step) }))
            uses.sort { $0.partitions < $1.partitions }
        }
    }

    /// The earlier counts whose certificates may still be unexpired at `now`, ascending; forgets the others.
    mutating func earlierCounts(current: Int, now: Date) -> [Int] {
        uses.removeAll { use in
            guard use.partitions != current, let until = use.publishUntil else { return false }
            return until <= now
        }
        return uses.map(\.partitions).filter { $0 != current }
    }

    /// The history stored at `path`; empty when there is none yet.
    static func load(_ path: String) throws -> PartitionHistory {
        guard FileManager.default.fileExists(atPath: path) else { return PartitionHistory() }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let history = try decoder.decode(PartitionHistory.self, from: Data(try SecureFile.read(path)))
        guard history.uses.allSatisfy({ (2...4_096).contains($0.partitions) }) else {
            throw DevIDPKIError(.malformed, "\(path) names a partition count outside 2-4096")
        }
        return history
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        try SecureFile.write(Array(try encoder.encode(self)) + [0x0A], to: path, mode: 0o644)
    }
}
