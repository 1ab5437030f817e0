public import X509

/// Splits a CA's revoked certificates over a fixed number of CRL partitions, so that no CRL grows past a size limit
/// however many certificates are revoked.
///
/// A certificate's partition is a stable function of its serial alone (``partition(for:partitions:)``: FNV-1a over
/// the serial's bytes, modulo the count), so the issuer can write the partition's URI into the certificate's CRL
/// Distribution Point when it issues it, long before the certificate is revoked. The count is therefore
/// configuration, not something derived from today's revocations: changing it re-homes existing certificates, so
/// the CRLs of the old count must go on being published until every certificate issued under it has expired.
/// Power-of-two counts make a change a split (partition `p` of `n` becomes `p` or `p + n` of `2n`).
///
/// DevID serials are random, so the partitions fill evenly; ``requiredPartitionCount(entryCount:limit:)`` leaves
/// headroom for the variation.
public struct CRLPartitioner: Sendable, Hashable {
    /// The CRL size the issue sets: no CRL over 1 MB.
    public static let defaultMaximumBytes = 1_000_000

    /// The upper bound on an encoded entry DevID writes: a 20-octet serial with a sign byte, a time and a reason.
    public static let maximumEntryBytes = 2 + (2 + 21) + 17 + 14
    /// Everything in a CRL but its entries, with room for a long issuer name and distribution point URI.
    public static let overheadBytes = 2_048

    /// A limit per partition.
    public enum Limit: Sendable, Hashable {
        /// At most this many bytes of DER per CRL.
        case bytes(Int)
        /// At most this many entries per CRL.
        case entries(Int)

        /// The entries that fit under the limit, assuming the largest entry.
        public var maximumEntries: Int {
            switch self {
            case .bytes(let bytes): max(1, (bytes - CRLPartitioner.overheadBytes) / CRLPartitioner.maximumEntryBytes)
            case .entries(let entries): max(1, entries)
            }
        }
    }

    /// How many partitions there are; at least 1.
    public let partitionCount: Int

    public init(partitionCount: Int) {
        self.partitionCount = max(1, partitionCount)
    }

    /// The partition count that keeps `entryCount` revocations under `limit`: a power of two with a quarter of
    /// each partition left free for uneven filling.
    public static func requiredPartitionCount(entryCount: Int, limit: Limit = .bytes(defaultMaximumBytes)) -> Int {
        let perPartition = max(1, limit.maximumEntries * 3 / 4)
        let needed = (max(0, entryCount) + perPartition - 1) / perPartition
        var count = 1
        while count < needed { count <<= 1 }
        return count
    }

    /// The partition a serial belongs to among `partitions` (0-based). Stable across processes and versions.
    public static func partition(for serial: Certificate.SerialNumber, partitions: Int) -> Int {
        guard partitions > 1 else { return 0 }
        // FNV-1a, 64-bit, over the serial's minimal big-endian magnitude.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in serial.bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return Int(hash % UInt64(partitions))
    }

    /// This partitioner's partition for `serial`.
    public func partition(for serial: Certificate.SerialNumber) -> Int {
        Self.partition(for: serial, partitions: partitionCount)
    }

    /// `entries` split into exactly ``partitionCount`` lists (some possibly empty — an empty partition still gets
    /// its CRL, because certificates name it), each in the input's order.
    public func split(_ entries: [RevokedEntry]) -> [[RevokedEntry]] {
        guard partitionCount > 1 else { return [entries] }
        var indices = [Int](repeating: 0, count: entries.count)
        var counts = [Int](repeating: 0, count: partitionCount)
        for (i, entry) in entries.enumerated() {
            let p = partition(for: entry.serial)
            indices[i] = p
            counts[p] += 1
        }
        var partitions = counts.map { count -> [RevokedEntry] in
            var list: [RevokedEntry] = []
            list.reserveCapacity(count)
            return list
        }
        for (i, entry) in entries.enumerated() {
            partitions[indices[i]].append(entry)
        }
        return partitions
    }
}
