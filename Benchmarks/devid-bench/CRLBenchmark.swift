import ArgumentParser
import Crypto
import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import X509

/// `devid-bench crl`: build a CRL of a million revoked certificates with `CRLBuilder`, whole and partitioned under
/// 1 MB per CRL, and the same from the SQLite registry's `revokedCredentials` pages.
struct CRLBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crl",
        abstract:
            "Build CRLs of many revoked certificates: one CRL, partitions under 1 MB, and from the SQLite registry."
    )

    @Option(name: .long, help: "Revoked certificates in the in-memory CRLs.")
    var entries = 1_000_000

    @Option(name: .long, help: "Revoked credentials inserted into a SQLite registry and built into CRLs (0 to skip).")
    var storeEntries = 100_000

    @Option(name: .long, help: "Largest DER size of one partition, in bytes.")
    var maximumBytes = CRLPartitioner.defaultMaximumBytes

    @Option(name: .long, help: "Where one partition and the issuing CA are written for the openssl check.")
    var opensslDirectory = "/tmp"

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...10_000_000).contains(entries) else { throw ValidationError("--entries must be 1-10000000") }
        guard (0...10_000_000).contains(storeEntries) else {
            throw ValidationError("--store-entries must be 0-10000000")
        }
        guard maximumBytes >= 4_096 else { throw ValidationError("--maximum-bytes must be at least 4096") }
    }

    func run() async throws {
        let machine = MachineFacts.current()
        progress("crypto baseline (\(output.baselineSeconds) s per operation)")
        let baseline = try CryptoBaseline.measure(seconds: output.baselineSeconds, names: [CryptoBaseline.p256Sign])
        let hashing = HashBaseline.measure(seconds: output.baselineSeconds)

        let directory = try BenchDirectory(prefix: "devid-bench-crl")
        defer { directory.remove() }
        progress("creating a CA hierarchy")
        let now = Date()
        let hierarchy = try CAStore.initialize(
            layout: CALayout(dataDirectory: directory.file("ca")),
            options: CAInitOptions(trustDomain: "bench.devid", keyEncryptionRounds: 1_000),
            passphrase: Array("devid-bench-passphrase".utf8), now: now
        ).hierarchy
        let authority = hierarchy.issuing
        let builder = try CRLBuilder(authority: authority)
        let thisUpdate = now
        let nextUpdate = now.addingTimeInterval(86_400)
        let clock = ContinuousClock()

        progress("generating \(entries) revoked entries")
        var generator = SystemRandomNumberGenerator()
        let reasons: [RevocationReason] = [
            .unspecified, .keyCompromise, .affiliationChanged, .superseded, .cessationOfOperation, .privilegeWithdrawn,
        ]
        let list = (0..<entries).map { _ in
            RevokedEntry(
                serial: SerialNumberGenerator.next(using: &generator),
                revokedAt: now.addingTimeInterval(-Double.random(in: 0..<(30 * 86_400), using: &generator)),
                reason: reasons.randomElement(using: &generator)!)
        }
        var failures: [String] = []

        // (a) One CRL.
        progress("building one CRL of \(entries) entries")
        var start = clock.now
        let single = try builder.build(entries: list, thisUpdate: thisUpdate, nextUpdate: nextUpdate, crlNumber: 1)
        let singleSeconds = (clock.now - start).seconds
        start = clock.now
        let reread = try CertificateRevocationList(derEncoded: single.derBytes)
        let singleParseSeconds = (clock.now - start).seconds
        if !reread.isSignatureValid(issuer: authority.certificate) { failures.append("the single CRL's signature") }
        if reread.entries.count != entries {
            failures.append("the single CRL reads back with \(reread.entries.count) entries")
        }
        if reread.entries.first?.serial != list.first?.serial || reread.entries.last?.serial != list.last?.serial {
            failures.append("the single CRL's first or last serial differs")
        }
        let singleBytes = single.derBytes.count

        // (b) Partitions under the size limit.
        let partitionCount = CRLPartitioner.requiredPartitionCount(entryCount: entries, limit: .bytes(maximumBytes))
        let partitioner = CRLPartitioner(partitionCount: partitionCount)
        progress("building \(partitionCount) partitions of \(entries) entries")
        start = clock.now
        let partitions = try builder.buildPartitions(
            entries: list, partitioner: partitioner, thisUpdate: thisUpdate, nextUpdate: nextUpdate, crlNumber: 1,
            maximumBytes: maximumBytes, distributionPoint: Self.distributionPoint)
        let partitionSeconds = (clock.now - start).seconds

        progress("checking every partition (read back, signature, entries, partition of each serial)")
        var partitionEntryCounts: [Int] = []
        var misplaced = 0
        var badSignatures = 0
        var seen = Set<Certificate.SerialNumber>(minimumCapacity: entries)
        start = clock.now
        for (index, crl) in partitions.enumerated() {
            let back = try CertificateRevocationList(derEncoded: crl.derBytes)
            if !back.isSignatureValid(issuer: authority.certificate) { badSignatures += 1 }
            if back.distributionPoint != Self.distributionPoint(index) || !back.onlyContainsUserCertificates {
                failures.append("partition \(index) names another distribution point")
            }
            partitionEntryCounts.append(back.entries.count)
            for entry in back.entries {
                if partitioner.partition(for: entry.serial) != index { misplaced += 1 }
                seen.insert(entry.serial)
            }
        }
        let partitionCheckSeconds = (clock.now - start).seconds
        let sizes = partitions.map(\.derBytes.count)
        let total = partitionEntryCounts.reduce(0, +)
        if badSignatures > 0 { failures.append("\(badSignatures) partitions have a bad signature") }
        if total != entries { failures.append("the partitions hold \(total) entries, not \(entries)") }
        if misplaced > 0 { failures.append("\(misplaced) serials are in a partition other than CRLPartitioner's") }
        if seen.count != entries || !list.allSatisfy({ seen.contains($0.serial) }) {
            failures.append("the partitions' serials are not the \(entries) revoked ones")
        }
        if let largest = sizes.max(), largest > maximumBytes {
            failures.append("the largest partition is \(largest) bytes")
        }
        seen = []

        // openssl reads one partition, checks its signature with the issuing CA, and counts its entries.
        let openssl = try Self.opensslCheck(
            partitions[0], index: 0, issuer: authority.certificate, directory: opensslDirectory)
        if !openssl.verified { failures.append("openssl did not verify partition 0: \(openssl.verifyOutput)") }
        if openssl.serialCount != partitionEntryCounts[0] {
            failures.append(
                "openssl counts \(openssl.serialCount) entries in partition 0, not \(partitionEntryCounts[0])")
        }

        // From the registry.
        var fromStore: StoreCRLRun?
        if storeEntries > 0 {
            fromStore = try await StoreCRLRun.execute(
                count: storeEntries, builder: builder, maximumBytes: maximumBytes, now: now,
                directory: directory.file("registry"), failures: &failures)
        }

        let report = CRLReport(
            machine: machine, baseline: baseline, hashing: hashing, entries: entries, maximumBytes: maximumBytes,
            single: .init(
                buildSeconds: singleSeconds, bytes: singleBytes, entriesPerSecond: Double(entries) / singleSeconds,
                readBackSeconds: singleParseSeconds,
                hashFloorSeconds: Double(singleBytes) / hashing.bytesPerSecond),
            partitioned: .init(
                partitions: partitionCount, buildSeconds: partitionSeconds,
                entriesPerSecond: Double(entries) / partitionSeconds, largestBytes: sizes.max() ?? 0,
                smallestBytes: sizes.min() ?? 0, totalBytes: sizes.reduce(0, +),
                fewestEntries: partitionEntryCounts.min() ?? 0, mostEntries: partitionEntryCounts.max() ?? 0,
                totalEntries: total, checkSeconds: partitionCheckSeconds,
                hashFloorSeconds: Double(sizes.reduce(0, +)) / hashing.bytesPerSecond),
            openssl: openssl, store: fromStore, failures: failures)
        if output.json {
            try printJSON(report)
        } else {
            print(report.render())
        }
        guard failures.isEmpty else {
            progress("FAILED: " + failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }

    static func distributionPoint(_ index: Int) -> String { "http://127.0.0.1:8080/crl/issuing-\(index).crl" }

    /// Writes `crl` and its issuer to `directory`, then runs `openssl crl` on them.
    static func opensslCheck(
        _ crl: CertificateRevocationList, index: Int, issuer: Certificate, directory: String
    ) throws -> OpenSSLCheck {
        let crlPath = directory + "/devid-bench-crl-partition-\(index).crl"
        let caPath = directory + "/devid-bench-crl-issuing-ca.pem"
        try Data(crl.derBytes).write(to: URL(fileURLWithPath: crlPath))
        try Data(issuer.pemString.utf8).write(to: URL(fileURLWithPath: caPath))
        let text = try runProcess("/usr/bin/openssl", ["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text"])
        let verify = try runProcess(
            "/usr/bin/openssl", ["crl", "-inform", "DER", "-in", crlPath, "-CAfile", caPath, "-noout"])
        let lines = text.output.split(separator: "\n", omittingEmptySubsequences: false)
        return OpenSSLCheck(
            file: crlPath, head: lines.prefix(16).map(String.init),
            serialCount: lines.filter { $0.contains("Serial Number:") }.count,
            verified: verify.status == 0 && verify.output.contains("verify OK"),
            verifyOutput: verify.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func runProcess(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// What `openssl crl` said about one partition.
struct OpenSSLCheck: Codable, Sendable {
    var file: String
    /// The first lines of `openssl crl -inform DER -noout -text`.
    var head: [String]
    /// `Serial Number:` lines in the whole text.
    var serialCount: Int
    /// `openssl crl -CAfile <issuing CA>` printed `verify OK`.
    var verified: Bool
    var verifyOutput: String
}

/// SHA-256 throughput on one core: a CRL's signature hashes its whole TBS once, so this bounds the build from below.
struct HashBaseline: Codable, Sendable {
    var bytesPerSecond: Double
    var measuredBytes: Int

    static func measure(seconds: Double) -> HashBaseline {
        let block = [UInt8](repeating: 0xA5, count: 1 << 20)
        let clock = ContinuousClock()
        let start = clock.now
        var bytes = 0
        var elapsed = 0.0
        repeat {
            blackHole(SHA256.hash(data: block))
            bytes += block.count
            elapsed = (clock.now - start).seconds
        } while elapsed < seconds
        return HashBaseline(bytesPerSecond: Double(bytes) / elapsed, measuredBytes: bytes)
    }
}

/// Revoked credentials in a SQLite registry, paged out with `revokedCredentials` and built into partitions.
struct StoreCRLRun: Codable, Sendable {
    var credentials: Int
    var insertSeconds: Double
    var insertsPerSecond: Double
    var pageSize: Int
    var pages: Int
    var readSeconds: Double
    var partitions: Int
    var buildSeconds: Double
    var largestBytes: Int
    var totalSeconds: Double
    var entriesPerSecond: Double

    static let pageSize = 10_000

    static func execute(
        count: Int, builder: CRLBuilder, maximumBytes: Int, now: Date, directory: String, failures: inout [String]
    ) async throws -> StoreCRLRun {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory + "/registry.sqlite")
        let tenant = TenantID(rawValue: "bench")!
        try await store.createTenant(Tenant(id: tenant, displayName: "Benchmark", createdAt: now), audit: nil)
        // A device per 100 credentials; the CRL does not care whose they are.
        let deviceCount = max(1, (count + 99) / 100)
        let devices = (0..<deviceCount).map { index in
            Device(
                id: DeviceID(derivedFromHardwareSerial: "CRL-\(index)"), tenant: tenant, hardwareSerial: "CRL-\(index)",
                lot: nil, state: .revoked, createdAt: now)
        }
        _ = try await store.importDevices(
            devices,
            audit: AuditEvent(
                time: now, actor: "devid-bench", action: "device.import", outcome: .success, tenant: tenant))

        // Setup: credentials stored already revoked, one transaction (credential + audit event) each, as the store's
        // API allows; several writers so the Swift side overlaps the serialized commits.
        let issuer = String(describing: builder.authority.certificate.subject)
        let reasons: [RevocationReason] = [.unspecified, .keyCompromise, .superseded, .cessationOfOperation]
        progress("inserting \(count) revoked credentials into SQLite (one transaction each)")
        let clock = ContinuousClock()
        var start = clock.now
        let next = IndexDispenser()
        let lastReport = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    while true {
                        let index = next.take()
                        guard index < count else { break }
                        let serial = DevIDCore.SerialNumber(bytes: SerialNumberGenerator.next(using: &generator).bytes)
                        let revokedAt = now.addingTimeInterval(-Double(index % 86_400))
                        let credential = Credential(
                            serial: serial, deviceID: devices[index % deviceCount].id, kind: .ldevid, issuer: issuer,
                            notBefore: now.addingTimeInterval(-10 * 86_400),
                            notAfter: now.addingTimeInterval(20 * 86_400),
                            publicKeySHA256: String(repeating: "0", count: 64 - serial.rawValue.count)
                                + serial.rawValue,
                            certificateSHA256: serial.rawValue
                                + String(repeating: "f", count: 64 - serial.rawValue.count),
                            der: [0x30, 0x00], status: .revoked, revokedAt: revokedAt,
                            revocationReason: reasons[index % reasons.count], createdAt: now)
                        try await store.insertCredential(
                            credential,
                            audit: AuditEvent(
                                time: now, actor: "devid-bench", action: "credential.revoke", outcome: .success,
                                reason: "benchmark", tenant: tenant, device: credential.deviceID, serial: serial))
                        if index > 0, index % 50_000 == 0 {
                            progress(
                                "  \(index) inserted (\(fixed(Double(index) / Date().timeIntervalSince(lastReport), 0))/s)"
                            )
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let insertSeconds = (clock.now - start).seconds

        // Timed: page the revoked credentials out, then build the partitions.
        progress("building CRL partitions from the registry (\(pageSize) credentials a page)")
        start = clock.now
        var entries: [RevokedEntry] = []
        entries.reserveCapacity(count)
        var after: DevIDCore.SerialNumber?
        var pages = 0
        while true {
            let page = try await store.revokedCredentials(
                issuer: issuer, notExpiredAt: now, afterSerial: after, limit: pageSize)
            pages += 1
            for credential in page {
                entries.append(
                    RevokedEntry(
                        serial: credential.serial, revokedAt: credential.revokedAt ?? now,
                        reason: credential.revocationReason ?? .unspecified))
            }
            guard page.count == pageSize, let last = page.last else { break }
            after = last.serial
        }
        let readSeconds = (clock.now - start).seconds
        let partitionCount = CRLPartitioner.requiredPartitionCount(
            entryCount: entries.count, limit: .bytes(maximumBytes))
        let buildStart = clock.now
        let crls = try builder.buildPartitions(
            entries: entries, partitioner: CRLPartitioner(partitionCount: partitionCount), thisUpdate: now,
            nextUpdate: now.addingTimeInterval(86_400), crlNumber: 1, maximumBytes: maximumBytes,
            distributionPoint: CRLBenchmark.distributionPoint)
        let buildSeconds = (clock.now - buildStart).seconds
        let totalSeconds = (clock.now - start).seconds

        let listed = crls.reduce(0) { $0 + $1.entries.count }
        if entries.count != count { failures.append("the registry paged out \(entries.count) of \(count) revoked") }
        if listed != count { failures.append("the registry's partitions list \(listed) of \(count)") }
        if !crls.allSatisfy({ $0.isSignatureValid(issuer: builder.authority.certificate) }) {
            failures.append("a registry partition has a bad signature")
        }
        return StoreCRLRun(
            credentials: count, insertSeconds: insertSeconds, insertsPerSecond: Double(count) / insertSeconds,
            pageSize: pageSize, pages: pages, readSeconds: readSeconds, partitions: partitionCount,
            buildSeconds: buildSeconds, largestBytes: crls.map(\.derBytes.count).max() ?? 0, totalSeconds: totalSeconds,
            entriesPerSecond: Double(count) / totalSeconds)
    }
}

struct CRLReport: Codable, Sendable {
    struct Single: Codable, Sendable {
        var buildSeconds: Double
        var bytes: Int
        var entriesPerSecond: Double
        var readBackSeconds: Double
        /// SHA-256 of that many bytes at the measured rate.
        var hashFloorSeconds: Double
    }

    struct Partitioned: Codable, Sendable {
        var partitions: Int
        var buildSeconds: Double
        var entriesPerSecond: Double
        var largestBytes: Int
        var smallestBytes: Int
        var totalBytes: Int
        var fewestEntries: Int
        var mostEntries: Int
        var totalEntries: Int
        var checkSeconds: Double
        var hashFloorSeconds: Double
    }

    var benchmark = "crl"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var hashing: HashBaseline
    var entries: Int
    var maximumBytes: Int
    var single: Single
    var partitioned: Partitioned
    var openssl: OpenSSLCheck
    var store: StoreCRLRun?
    var failures: [String]

    func render() -> String {
        var setup = Table(title: "devid-bench crl")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "run",
            "\(entries) revoked entries (random 16-byte serials, reasons, times in the last 30 days), "
                + "CRLBuilder with the issuing CA (P-256), one thread")

        var hash = Table(title: "Hash baseline (swift-crypto, one thread)")
        hash.add("SHA-256", "\(fixed(hashing.bytesPerSecond / 1e6, 0)) MB/s")
        let sign = baseline.operation(CryptoBaseline.p256Sign)

        var one = Table(title: "(a) One CRL")
        one.add("build", "\(fixed(single.buildSeconds, 3)) s = \(fixed(single.entriesPerSecond, 0)) entries/s")
        one.add("size", "\(single.bytes) bytes (\(fixed(Double(single.bytes) / Double(entries), 1)) per entry)")
        one.add("read back", "\(fixed(single.readBackSeconds, 3)) s (CertificateRevocationList(derEncoded:))")
        one.add(
            "hash floor",
            "SHA-256 of \(single.bytes) bytes = \(fixed(single.hashFloorSeconds * 1_000, 1)) ms + 1 P-256 sign "
                + "(\(fixed(sign.microsecondsPerOp, 1)) µs); the build takes \(fixed(single.buildSeconds / single.hashFloorSeconds, 1))× that"
        )

        var parts = Table(title: "(b) Partitions of at most \(maximumBytes) bytes")
        parts.add("partitions", "\(partitioned.partitions) (CRLPartitioner.requiredPartitionCount)")
        parts.add(
            "build",
            "\(fixed(partitioned.buildSeconds, 3)) s = \(fixed(partitioned.entriesPerSecond, 0)) entries/s "
                + "(\(partitioned.partitions) signatures)")
        parts.add(
            "sizes",
            "largest \(partitioned.largestBytes) bytes, smallest \(partitioned.smallestBytes), total "
                + "\(partitioned.totalBytes)")
        parts.add(
            "entries per partition",
            "\(partitioned.fewestEntries)-\(partitioned.mostEntries); sum \(partitioned.totalEntries)")
        parts.add(
            "check", "\(fixed(partitioned.checkSeconds, 2)) s to read back, verify and place every entry")
        parts.add(
            "hash + sign floor",
            "\(fixed((partitioned.hashFloorSeconds + Double(partitioned.partitions) * sign.microsecondsPerOp / 1e6) * 1_000, 1)) ms; "
                + "the build takes \(fixed(partitioned.buildSeconds / (partitioned.hashFloorSeconds + Double(partitioned.partitions) * sign.microsecondsPerOp / 1e6), 1))× that"
        )

        var ssl = Table(title: "openssl on partition 0 (\(openssl.file))")
        ssl.add("verify with the issuing CA", openssl.verified ? "verify OK" : "FAILED: \(openssl.verifyOutput)")
        ssl.add("Serial Number lines", String(openssl.serialCount))
        for (index, line) in openssl.head.enumerated() { ssl.add(index == 0 ? "text" : "", line) }

        var sections = [
            setup.render(), baseline.table().render(), hash.render(), one.render(), parts.render(), ssl.render(),
        ]
        if let store {
            var db = Table(title: "From the SQLite registry (\(store.credentials) revoked credentials)")
            db.add(
                "insert (setup)",
                "\(fixed(store.insertSeconds, 1)) s = \(fixed(store.insertsPerSecond, 0)) credentials/s "
                    + "(one transaction with an audit event each)")
            db.add(
                "read",
                "\(fixed(store.readSeconds, 3)) s in \(store.pages) pages of \(store.pageSize) (revokedCredentials)")
            db.add(
                "build",
                "\(fixed(store.buildSeconds, 3)) s, \(store.partitions) partitions, largest \(store.largestBytes) bytes"
            )
            db.add(
                "total", "\(fixed(store.totalSeconds, 3)) s = \(fixed(store.entriesPerSecond, 0)) entries/s")
            sections.append(db.render())
        }
        var verdict = Table(title: "Checks (\(failures.isEmpty ? "all passed" : "FAILED"))")
        verdict.add(
            "checked",
            "signatures, entry counts, each serial in CRLPartitioner's partition, the partitions' serials = the input, "
                + "sizes ≤ limit, openssl verify and count")
        for failure in failures { verdict.add("FAILED", failure) }
        sections.append(verdict.render())
        return sections.joined(separator: "\n")
    }
}
