import ArgumentParser
import DevIDCore
import DevIDPKI
import Foundation

/// `devid-bench mint`: `LotMinter.mint` into a temporary directory, against the crypto and file-write floors.
struct MintBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mint",
        abstract: "Mint a factory lot (key, IDevID, files per device) into a temporary directory."
    )

    @Option(name: .long, help: "Devices in the lot.")
    var count = 10_000

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be 1-1000000") }
    }

    func run() async throws {
        let machine = MachineFacts.current()
        progress("crypto baseline (\(output.baselineSeconds) s per operation)")
        let baseline = try CryptoBaseline.measure(
            seconds: output.baselineSeconds, names: [CryptoBaseline.p256Keygen, CryptoBaseline.p256Sign])
        let directory = try BenchDirectory(prefix: "devid-bench-mint")
        defer { directory.remove() }

        progress("file-write baseline (a directory and three fsynced files per device)")
        let io = try FileWriteBaseline.measure(in: directory.file("io"), seconds: output.baselineSeconds)

        progress("creating a CA hierarchy")
        let layout = CALayout(dataDirectory: directory.file("ca"))
        let hierarchy = try CAStore.initialize(
            layout: layout, options: CAInitOptions(trustDomain: "bench.devid", keyEncryptionRounds: 1_000),
            passphrase: Array("devid-bench-passphrase".utf8), now: Date()
        ).hierarchy
        guard let manufacturer = hierarchy.manufacturer else { throw BenchError("no manufacturer CA was created") }
        let minter = LotMinter(manufacturer: manufacturer)
        let lotDirectory = directory.file("lot")

        progress("minting \(count) devices")
        let clock = ContinuousClock()
        let cpuStart = processCPUSeconds()
        let start = clock.now
        let manifest = try minter.mint(
            lot: LotID(rawValue: "bench-lot")!, tenant: TenantID(rawValue: "bench")!, count: count,
            outputDirectory: lotDirectory, now: Date())
        let seconds = (clock.now - start).seconds
        let cpuSeconds = processCPUSeconds() - cpuStart

        var failures: [String] = []
        if manifest.devices.count != count { failures.append("manifest lists \(manifest.devices.count) devices") }
        let entries = try FileManager.default.contentsOfDirectory(atPath: lotDirectory)
        let deviceDirectories = entries.filter { $0 != "manifest.json" }
        if deviceDirectories.count != count { failures.append("\(deviceDirectories.count) device directories") }
        if Set(manifest.devices.map(\.deviceID.rawValue)) != Set(deviceDirectories) {
            failures.append("device directories do not match the manifest")
        }
        for entry in manifest.devices.prefix(3) + manifest.devices.suffix(3) {
            for file in ["idevid.key", "idevid.crt", "chain.pem"]
            where !FileManager.default.fileExists(atPath: "\(lotDirectory)/\(entry.deviceID.rawValue)/\(file)") {
                failures.append("\(entry.deviceID)/\(file) is missing")
            }
        }

        let report = MintReport(
            machine: machine, baseline: baseline, fileWrites: io, count: count, seconds: seconds,
            cpuSeconds: cpuSeconds, failures: failures)
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
}

struct MintReport: Codable, Sendable {
    var benchmark = "mint"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var fileWrites: FileWriteBaseline
    var count: Int
    var seconds: Double
    var devicesPerSecond: Double
    var cpuSeconds: Double
    /// One core's time for 1 P-256 key generation + 1 P-256 sign: `LotMinter` runs on one thread.
    var cryptoMicrosecondsPerDevice: Double
    var cryptoCeilingDevicesPerSecond: Double
    var fractionOfCryptoCeiling: Double
    /// Crypto plus the file-write baseline.
    var cryptoAndFilesCeilingDevicesPerSecond: Double
    var fractionOfCryptoAndFilesCeiling: Double
    var failures: [String]

    init(
        machine: MachineFacts, baseline: CryptoBaseline, fileWrites: FileWriteBaseline, count: Int, seconds: Double,
        cpuSeconds: Double, failures: [String]
    ) {
        self.machine = machine
        self.baseline = baseline
        self.fileWrites = fileWrites
        self.count = count
        self.seconds = seconds
        self.devicesPerSecond = Double(count) / seconds
        self.cpuSeconds = cpuSeconds
        cryptoMicrosecondsPerDevice = baseline.cost(CryptoBaseline.p256Keygen) + baseline.cost(CryptoBaseline.p256Sign)
        cryptoCeilingDevicesPerSecond = 1e6 / cryptoMicrosecondsPerDevice
        fractionOfCryptoCeiling = devicesPerSecond / cryptoCeilingDevicesPerSecond
        cryptoAndFilesCeilingDevicesPerSecond = 1e6 / (cryptoMicrosecondsPerDevice + fileWrites.microsecondsPerDevice)
        fractionOfCryptoAndFilesCeiling = devicesPerSecond / cryptoAndFilesCeilingDevicesPerSecond
        self.failures = failures
    }

    func render() -> String {
        var setup = Table(title: "devid-bench mint")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add("run", "LotMinter.mint of \(count) devices into a temporary directory (one thread)")

        var files = Table(title: "File-write baseline (SecureFile: temp file, fsync, rename, directory fsync)")
        files.add(
            "1 directory + 3 files",
            "\(fixed(fileWrites.devicesPerSecond, 0)) devices/s (\(fixed(fileWrites.microsecondsPerDevice, 0)) µs each)")

        var results = Table(title: "Results (\(failures.isEmpty ? "checks passed" : "FAILED"))")
        results.add("total", "\(fixed(seconds, 2)) s")
        results.add("devices/s", fixed(devicesPerSecond, 1))
        results.add("CPU", "\(fixed(cpuSeconds, 2)) s (\(percent(cpuSeconds / seconds)) of one core)")
        results.add(
            "crypto floor",
            "keygen + sign = \(fixed(cryptoMicrosecondsPerDevice, 1)) µs → \(fixed(cryptoCeilingDevicesPerSecond, 0)) "
                + "devices/s on one core; measured is \(percent(fractionOfCryptoCeiling))")
        results.add(
            "crypto + files floor",
            "\(fixed(cryptoAndFilesCeilingDevicesPerSecond, 0)) devices/s; measured is "
                + percent(fractionOfCryptoAndFilesCeiling))
        for failure in failures { results.add("FAILED", failure) }

        return [setup.render(), baseline.table().render(), files.render(), results.render()].joined(separator: "\n")
    }
}
