import DevIDPKI
import Foundation

/// The CRL partition counts the issuing CA has written into certificates, and when each was last in use, kept in
/// `DATA/crl/partitions.json`.
///
/// A partition's name carries its count (`issuing-4-1`), and a certificate keeps the CRL Distribution Point it was
/// issued with. After `crl.partitions` changes, the certificates issued under an earlier count still name that
/// count's partitions, so the publisher goes on signing them until every such certificate has expired: until the
/// count's last use plus the LDevID lifetime, plus one CRL validity for certificates issued after the last
/// rebuild that recorded the use.
struct PartitionHistory: Sendable, Equatable, Codable {
    struct Use: Sendable, Equatable, Codable {
        var partitions: Int
        var lastUsed: Date
    }

    private(set) var uses: [Use] = []

    /// `partitions` is in use at `now` (a count of 1 names no partition and is not recorded).
    mutating func record(_ partitions: Int, at now: Date) {
        guard partitions > 1 else { return }
        uses.removeAll { $0.partitions == partitions }
        uses.append(Use(partitions: partitions, lastUsed: now))
        uses.sort { $0.partitions < $1.partitions }
    }

    /// The earlier counts whose certificates may still be unexpired at `now`, ascending; forgets the others.
    /// `retention` nil means certificates never expire, so no count is ever forgotten.
    mutating func earlierCounts(current: Int, now: Date, retention: TimeInterval?) -> [Int] {
        if let retention {
            uses.removeAll { $0.partitions != current && $0.lastUsed.addingTimeInterval(retention) <= now }
        }
        return uses.map(\.partitions).filter { $0 != current }
    }

    /// The history stored at `path`; empty when there is none yet. A file that cannot be read throws, and the
    /// caller decides (the publisher logs it and starts over rather than stop publishing).
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
