import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing
import X509

/// Entries for the size and speed tests: random 16-byte positive serials (as DevID issues), reasons cycling.
enum RevocationBenchmark {
    static func entries(count: Int, now: Date, seed: UInt64 = 1_000_000) -> [RevokedEntry] {
        var generator = SeededGenerator(seed: seed)
        let reasons: [RevocationReason] = [.keyCompromise, .superseded, .cessationOfOperation, .affiliationChanged]
        var entries: [RevokedEntry] = []
        entries.reserveCapacity(count)
        for index in 0..<count {
            var bytes = generator.bytes(16)
            bytes[0] = bytes[0] & 0x7F | 0x01
            entries.append(
                RevokedEntry(
                    serial: bytes, revokedAt: now - Double(index % 86_400), reason: reasons[index % reasons.count]))
        }
        return entries
    }
}

@Suite("Revocation: CRL partitions")
struct RevocationPartitionTests {
    /// FNV-1a 64 of the serial's bytes, mod n, computed independently (Python) — a change here re-homes every
    /// issued certificate's CDP, so these values must never change.
    @Test(
        "a serial's partition is a fixed function of its bytes",
        arguments: [
            ([0x01], 64, 44), ([0x7F, 0xFF], 64, 35), ([0x0A, 0xBC], 7, 5), (Array(1...20), 1_024, 781),
            ([0x00], 16, 5), ([0x00, 0x00, 0x01], 64, 44),
        ] as [([UInt8], Int, Int)])
    func stablePartition(serial: [UInt8], partitions: Int, expected: Int) {
        #expect(
            CRLPartitioner.partition(for: Certificate.SerialNumber(bytes: serial), partitions: partitions) == expected)
        #expect(
            CRLPartitioner(partitionCount: partitions).partition(for: Certificate.SerialNumber(bytes: serial))
                == expected)
    }

    @Test("one partition (or a nonsensical count) puts everything in partition 0", arguments: [-3, 0, 1])
    func singlePartition(count: Int) {
        let partitioner = CRLPartitioner(partitionCount: count)
        #expect(partitioner.partitionCount == 1)
        #expect(CRLPartitioner.partition(for: Certificate.SerialNumber(bytes: [0x55]), partitions: count) == 0)
        let entries = RevocationBenchmark.entries(count: 10, now: Date(timeIntervalSince1970: 1_790_000_000))
        #expect(partitioner.split(entries) == [entries])
    }

    @Test("split keeps every entry once, in order, in the partition its serial names")
    func splitCoversEverything() {
        let entries = RevocationBenchmark.entries(count: 20_000, now: Date(timeIntervalSince1970: 1_790_000_000))
        let partitioner = CRLPartitioner(partitionCount: 64)
        let partitions = partitioner.split(entries)
        #expect(partitions.count == 64)
        #expect(partitions.map(\.count).reduce(0, +) == entries.count)
        for (index, partition) in partitions.enumerated() {
            #expect(partition.allSatisfy { partitioner.partition(for: $0.serial) == index })
        }
        // Order within a partition follows the input.
        let positions = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.serial.bytes, $0) })
        for partition in partitions {
            let order = partition.compactMap { positions[$0.serial.bytes] }
            #expect(order == order.sorted())
        }
        // Random serials fill partitions evenly: every one within 20% of the mean (312.5).
        let mean = Double(entries.count) / 64
        #expect(partitions.allSatisfy { abs(Double($0.count) - mean) < 0.2 * mean }, "\(partitions.map(\.count))")
    }

    @Test(
        "the partition count leaves a quarter of each partition free",
        arguments: [
            (0, CRLPartitioner.Limit.bytes(1_000_000), 1), (10_000, .bytes(1_000_000), 1),
            (13_365, .bytes(1_000_000), 1), (13_366, .bytes(1_000_000), 2), (1_000_000, .bytes(1_000_000), 128),
            (1_000_000, .entries(10_000), 256), (7_500, .entries(10_000), 1), (7_501, .entries(10_000), 2),
        ] as [(Int, CRLPartitioner.Limit, Int)])
    func requiredPartitionCount(entries: Int, limit: CRLPartitioner.Limit, expected: Int) {
        #expect(CRLPartitioner.requiredPartitionCount(entryCount: entries, limit: limit) == expected)
    }

    @Test("buildPartitions refuses a partition over the size limit")
    func oversizedPartition() throws {
        let fixture = try RevocationFixture.get()
        let entries = RevocationBenchmark.entries(count: 2_000, now: fixture.now)
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try fixture.crlBuilder().buildPartitions(
                entries: entries, partitioner: CRLPartitioner(partitionCount: 2), thisUpdate: fixture.now,
                nextUpdate: fixture.now + 60, crlNumber: 1, maximumBytes: 20_000
            ) { "http://crl.example/\($0).crl" }
        }
    }

    /// The benchmark: a million revoked credentials, partitioned so that no CRL reaches 1 MB.
    /// Timings are printed; they are for a debug build unless the tests run with `-c release`.
    @Test("1,000,000 revoked entries: every partition CRL is under 1 MB and verifies")
    func millionEntries() throws {
        let fixture = try RevocationFixture.get()
        let clock = ContinuousClock()
        var entries: [RevokedEntry] = []
        let generation = clock.measure { entries = RevocationBenchmark.entries(count: 1_000_000, now: fixture.now) }
        let count = CRLPartitioner.requiredPartitionCount(entryCount: entries.count)
        let partitioner = CRLPartitioner(partitionCount: count)
        var crls: [CertificateRevocationList] = []
        let building = try clock.measure {
            crls = try fixture.crlBuilder().buildPartitions(
                entries: entries, partitioner: partitioner, thisUpdate: fixture.now, nextUpdate: fixture.now + 86_400,
                crlNumber: 1
            ) { "http://ops.test.devid/crl/issuing-\(count)-\($0).crl" }
        }
        let sizes = crls.map(\.derBytes.count)
        #expect(crls.count == count)
        #expect(sizes.allSatisfy { $0 < 1_000_000 }, "largest partition: \(sizes.max() ?? 0) bytes")
        #expect(crls.map(\.entries.count).reduce(0, +) == 1_000_000)
        print(
            "1M entries: generated in \(generation); \(count) partitions built in \(building); sizes "
                + "\(sizes.min() ?? 0)...\(sizes.max() ?? 0) bytes, total \(sizes.reduce(0, +))")

        // One partition through OpenSSL: it parses and the CA's signature verifies.
        let scratch = try Scratch()
        defer { scratch.remove() }
        let largest = try #require(crls.max { $0.derBytes.count < $1.derBytes.count })
        let verified = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", try scratch.write("partition.crl", largest.derBytes), "-CAfile",
            fixture.issuingFile, "-noout", "-verify",
        ])
        #expect(verified.output.contains("verify OK"), "\(verified.output)")

        // And the unpartitioned CRL, for the record: one ~50 MB CRL.
        var single: CertificateRevocationList?
        let monolithic = try clock.measure {
            single = try fixture.crlBuilder().build(
                entries: entries, thisUpdate: fixture.now, nextUpdate: fixture.now + 86_400, crlNumber: 1)
        }
        print("1M entries in one CRL: \(single?.derBytes.count ?? 0) bytes in \(monolithic)")
    }
}
