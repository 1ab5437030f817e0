import ArgumentParser
import Crypto
import DevIDCore
import DevIDPKCS11
import DevIDPKI
import Foundation
import X509

#if canImport(Glibc)
    import Glibc
#endif

/// `devid-bench sign`: CA signing through a PKCS#11 token (SoftHSM2, and a TPM through tpm2-pkcs11 when its
/// environment is given) against the same operations with an in-memory key (the encrypted-file case), in one run.
struct SignBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "ECDSA P-256 signatures and LDevID issuance through SoftHSM2 (and a TPM) against an in-memory key."
    )

    @Option(name: .long, help: "Seconds each measurement runs.") var seconds = 3.0
    @Option(name: .long, help: "Threads signing at once through the token in the concurrent measurement.")
    var threads = 2
    @Option(name: .long, help: "A scripts/tpm-sandbox directory (its env file): also measure the TPM.")
    var tpm: String?
    @Flag(name: .long, help: "Print one JSON document on stdout instead of the table.") var json = false

    struct Measurement: Codable, Sendable {
        var name: String
        var operations: Int
        var seconds: Double
        var perSecond: Double
        var microseconds: Double
        /// Against the in-memory key's rate for the same operation.
        var ratioToFileKey: Double?
    }

    struct Report: Codable, Sendable {
        var benchmark = "sign"
        var machine: MachineFacts
        var measurements: [Measurement]
        var tpmKeyGenerationMilliseconds: [Double]?
    }

    func run() async throws {
        let machine = MachineFacts.current()
        let work = try BenchDirectory(prefix: "devid-bench-sign")
        defer { work.remove() }
        // SoftHSM2 reads SOFTHSM2_CONF when the module is loaded: set it before anything loads it.
        let tokens = work.file("tokens")
        try FileManager.default.createDirectory(atPath: tokens, withIntermediateDirectories: true)
        let conf = work.file("softhsm2.conf")
        try "directories.tokendir = \(tokens)\nobjectstore.backend = file\nlog.level = ERROR\n".write(
            toFile: conf, atomically: true, encoding: .utf8)
        setenv("SOFTHSM2_CONF", conf, 1)
        let pin = work.file("pin")
        try "1234\n".write(toFile: pin, atomically: true, encoding: .utf8)
        try shell(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"])
        if let tpm { try loadEnvironment(tpm + "/env") }

        let digest = Array(SHA256.hash(data: Array("devid-bench".utf8)))
        let fileKey = P256.Signing.PrivateKey()
        var results: [Measurement] = []

        progress("in-memory P-256 key: raw signatures")
        let fileSign = measure("file key: ECDSA P-256 sign (digest)") {
            _ = try fileKey.signature(for: SHA256.hash(data: digest))
        }
        results.append(fileSign)

        progress("SoftHSM2: a key in the token")
        let softURI = try PKCS11URI("pkcs11:token=bench?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:\(pin)")
        let softKey = try PKCS11PrivateKey.generate(in: softURI, label: "issuing", curve: .p256)
        var soft = measure("SoftHSM2: ECDSA P-256 sign (C_Sign)") { _ = try softKey.signDigest(digest) }
        soft.ratioToFileKey = soft.perSecond / fileSign.perSecond
        results.append(soft)
        var softThreads = try measureConcurrently("SoftHSM2: ECDSA P-256 sign, \(threads) threads", threads: threads) {
            _ = try softKey.signDigest(digest)
        }
        softThreads.ratioToFileKey = softThreads.perSecond / fileSign.perSecond
        results.append(softThreads)

        progress("LDevID issuance: the issuing CA's key in memory and in SoftHSM2")
        let now = Date()
        let name = try DistinguishedName { CommonName("DevID Bench Issuing CA") }
        let fileCA = try CertificateAuthority.makeRoot(
            subject: name, key: Certificate.PrivateKey(fileKey), profile: .issuing, now: now)
        let tokenCA = try CertificateAuthority.makeRoot(
            subject: name, key: Certificate.PrivateKey(softKey), profile: .issuing, now: now)
        let deviceKey = P256.Signing.PrivateKey()
        let issueFile = measure("file key: issue an LDevID") {
            _ = try fileCA.issueLDevID(
                device: DeviceID(rawValue: "bench-1")!, tenant: TenantID(rawValue: "bench")!, trustDomain: "bench.devid",
                publicKey: Certificate.PublicKey(deviceKey.publicKey), profile: .ldevid, now: now)
        }
        results.append(issueFile)
        var issueToken = measure("SoftHSM2: issue an LDevID") {
            _ = try tokenCA.issueLDevID(
                device: DeviceID(rawValue: "bench-1")!, tenant: TenantID(rawValue: "bench")!, trustDomain: "bench.devid",
                publicKey: Certificate.PublicKey(deviceKey.publicKey), profile: .ldevid, now: now)
        }
        issueToken.ratioToFileKey = issueToken.perSecond / issueFile.perSecond
        results.append(issueToken)

        var keygen: [Double]?
        if tpm != nil {
            progress("TPM (tpm2-pkcs11 on swtpm through tpm2-abrmd)")
            let tpmURI = try PKCS11URI(
                "pkcs11:token=\(ProcessInfo.processInfo.environment["DEVID_TPM_TOKEN_LABEL"] ?? "devid-tpm")"
                    + "?module-path=\(ProcessInfo.processInfo.environment["DEVID_TPM_MODULE"] ?? "")&pin-source=env:TPM_USER_PIN")
            var times: [Double] = []
            var last: PKCS11PrivateKey?
            for index in 0..<5 {
                let clock = ContinuousClock()
                let start = clock.now
                let key = try PKCS11PrivateKey.generate(in: tpmURI, label: "bench-\(getpid())-\(index)", curve: .p256)
                times.append((clock.now - start).seconds * 1000)
                if let last { try last.destroy() }
                last = key
            }
            keygen = times
            if let key = last {
                var tpmSign = measure("TPM: ECDSA P-256 sign (C_Sign)") { _ = try key.signDigest(digest) }
                tpmSign.ratioToFileKey = tpmSign.perSecond / fileSign.perSecond
                results.append(tpmSign)
                try key.destroy()
            }
        }
        try softKey.destroy()

        let report = Report(machine: machine, measurements: results, tpmKeyGenerationMilliseconds: keygen)
        if json { return try printJSON(report) }
        var table = Table(title: "devid-bench sign (\(machine.cores) cores, \(machine.build))")
        for result in results {
            table.add(
                result.name,
                "\(fixed(result.perSecond, 0))/s (\(fixed(result.microseconds, 1)) µs each)"
                    + (result.ratioToFileKey.map { "; \(fixed($0, 3)) × the file key" } ?? ""))
        }
        if let keygen {
            table.add("TPM: generate a P-256 key", keygen.map { fixed($0, 1) + " ms" }.joined(separator: ", "))
        }
        print(table.render())
    }

    func measure(_ name: String, _ body: () throws -> Void) -> Measurement {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while (clock.now - start).seconds < seconds {
            do { try body() } catch { progress("\(name): \(error)"); break }
            count += 1
        }
        let elapsed = (clock.now - start).seconds
        return Measurement(
            name: name, operations: count, seconds: elapsed, perSecond: Double(count) / elapsed,
            microseconds: elapsed / Double(max(count, 1)) * 1e6)
    }

    func measureConcurrently(_ name: String, threads: Int, _ body: @escaping @Sendable () throws -> Void) throws
        -> Measurement
    {
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: threads)
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        let group = DispatchGroup()
        let clock = ContinuousClock()
        let start = clock.now
        let limit = seconds
        nonisolated(unsafe) let shared = counts
        for index in 0..<threads {
            group.enter()
            Thread.detachNewThread {
                var count = 0
                while (clock.now - start).seconds < limit {
                    guard (try? body()) != nil else { break }
                    count += 1
                }
                shared[index] = count
                group.leave()
            }
        }
        group.wait()
        let elapsed = (clock.now - start).seconds
        let total = counts.reduce(0, +)
        return Measurement(
            name: name, operations: total, seconds: elapsed, perSecond: Double(total) / elapsed,
            microseconds: elapsed / Double(max(total, 1)) * 1e6)
    }

    func shell(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError("\(arguments[0]) failed") }
    }

    /// The `export NAME=value` lines of a scripts/tpm-sandbox env file, set in this process.
    func loadEnvironment(_ path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst("export ".count)
            guard let equals = pair.firstIndex(of: "=") else { continue }
            setenv(String(pair[..<equals]), String(pair[pair.index(after: equals)...]), 1)
        }
    }
}
