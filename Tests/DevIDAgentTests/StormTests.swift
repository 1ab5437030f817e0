import DevIDServer
import DevIDTesting
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Issue #13: a reconnect storm after an outage. The real `devid serve` (debug build) with a minted, imported and
/// enrolled lot is restarted with small limits, and `devid-bench storm run`, a separate process, makes every device
/// check in at once and a share of them re-enroll, retrying as the agent does. Every device must be served, the
/// server must push back with `Retry-After` and be obeyed, its operations listener must stay responsive, its memory
/// bounded, and it must stop cleanly afterwards.
///
/// BENCHMARKS.md ("Reconnect storm") has the larger release run and what these bounds mean.
@Suite("Reconnect storm", .serialized)
struct StormTests {
    /// Devices in the CI run: sized so the whole test stays near a minute on a loaded 2-core CI machine.
    static let devices = 300
    /// Generous for a debug server sharing 2 cores with the load generator and other suites, but still "answers
    /// within seconds, typically at once": a listener stuck behind the storm would time out instead. Measured in
    /// debug runs of this test on a 2-core machine at load 6-10: p99 0.5-2.3 s, medians 4-16 ms (debug runs by hand included). (With 128 storm
    /// connections instead of all 300 at once the p99 was no better: the machine's load dominates.) The release
    /// numbers are in BENCHMARKS.md.
    static let probeP99BoundMs = 5_000.0
    static let probeP50BoundMs = 500.0
    /// The server's peak RSS (VmHWM). A debug `devid serve` idles near 70 MiB and peaked at 82-114 MiB in storms of
    /// 300-1,000 devices; each open connection costs tens of KiB (NIOSSL buffers, HTTP state) and the generator
    /// holds at most 300 at once: 250 MiB leaves room for that and for the registry's caches, while a leak per
    /// request (thousands of requests here) would cross it.
    static let peakMemoryBoundMiB = 250.0

    @Test(
        "after a restart, every device checking in at once is served; 429/503 with Retry-After are obeyed; healthz, OCSP and the admin API stay responsive; memory bounded; clean exit",
        .timeLimit(.minutes(6)))
    func reconnectStorm() async throws {
        let work = try TemporaryDirectory(prefix: "devid-storm")
        defer { work.remove() }
        let dataDir = work.file("data")
        let clock = ContinuousClock()
        let started = clock.now

        // Setup, limits off: the fastest honest way to a fleet with LDevIDs is the product's own path.
        let unlimited = [
            "DEVID_LIMITS_SOURCE_PER_SECOND": "0", "DEVID_LIMITS_DEVICE_PER_SECOND": "0",
            "DEVID_LIMITS_TENANT_PER_SECOND": "0", "DEVID_LIMITS_GLOBAL_PER_SECOND": "0",
            "DEVID_LIMITS_ENROLLMENTS_IN_FLIGHT": "0",
        ]
        let setup = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path, environment: unlimited)
        defer { setup.kill() }
        let setupEndpoints = try await setup.waitUntilListening(timeout: ServeCLITests.startTimeout)
        let tenant = try await ServeCLITests.devid(["tenant", "create", "acme", "--data-dir", dataDir], in: work.path)
        try #require(tenant.succeeded, "\(tenant)")
        let lotDir = work.file("lot")
        let mint = try await ServeCLITests.devid(
            [
                "factory", "mint", "--data-dir", dataDir, "--lot", "S1", "--tenant", "acme", "--count",
                String(Self.devices), "--out", lotDir,
            ], in: work.path, timeout: 300)
        try #require(mint.succeeded, "\(mint)")
        let imported = try await ServeCLITests.devid(
            ["device", "import", "\(lotDir)/manifest.json", "--data-dir", dataDir], in: work.path)
        try #require(imported.succeeded, "\(imported)")
        let statePath = work.file("storm-state.json")
        let rootPath = "\(dataDir)/ca/root.crt"
        let prepare = try await Self.bench(
            [
                "storm", "prepare", "--lot", lotDir, "--out", statePath, "--server", setupEndpoints.estURL,
                "--trust-bundle", rootPath, "--concurrency", "8", "--json",
            ], in: work.path, timeout: 300)
        try #require(prepare.succeeded, "\(prepare)")
        let prepared = try JSONDecoder().decode(PrepareReport.self, from: Data(prepare.stdout.utf8))
        #expect(prepared.enrolled == Self.devices)
        let setupSeconds = (clock.now - started).seconds

        // The outage: the server stops, and comes back with small limits so that the storm meets back-pressure.
        let stopped = try await Self.terminate(setup)
        #expect(stopped.exitedNormally && stopped.status == 0, "\(stopped)")
        let limited = [
            // All check-ins together: 40/s after a burst of 50, so most of the fleet is told to come back later.
            "DEVID_LIMITS_GLOBAL_PER_SECOND": "40", "DEVID_LIMITS_GLOBAL_BURST": "50",
            // Two enrollments in flight, one of them reserved for renewals about to expire (none here).
            "DEVID_LIMITS_ENROLLMENTS_IN_FLIGHT": "2", "DEVID_LIMITS_RENEWAL_RESERVE": "1",
            "DEVID_LIMITS_OVERLOAD_RETRY_AFTER_SECONDS": "1",
        ]
        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path, environment: limited)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)

        let storm = try await Self.bench(
            [
                "storm", "run", "--state", statePath, "--server", endpoints.estURL, "--ops", endpoints.opsURL,
                "--trust-bundle", rootPath, "--admin-token-file", "\(dataDir)/secrets/admin-token",
                "--reenroll-share", "0.2", "--sources", "8", "--backoff-base", "1", "--backoff-cap", "10",
                "--max-connections", "512", "--deadline", "180", "--server-pid", String(endpoints.pid), "--json",
            ], in: work.path, timeout: 240)
        let report = try JSONDecoder().decode(RunReport.self, from: Data(storm.stdout.utf8))
        #expect(storm.succeeded, "\(storm.stderr)")
        #expect(report.failures.isEmpty, "\(report.failures)")

        // Every device was served: checked in, and the re-enrollers hold a new certificate for their new key.
        #expect(report.devices == Self.devices)
        #expect(report.reenrollers == Self.devices / 5)
        #expect(report.served == report.devices, "\(report.served) of \(report.devices)")
        #expect(report.checkedIn == report.devices)
        #expect(report.reenrolled == report.reenrollers)

        // Back-pressure happened, always with Retry-After, and no device came back before it had passed.
        #expect((report.journal.statuses["429"] ?? 0) > 0, "\(report.journal.statuses)")
        #expect((report.journal.statuses["503"] ?? 0) > 0, "\(report.journal.statuses)")
        #expect(report.journal.backPressure == report.journal.backPressureWithRetryAfter)
        #expect(report.journal.retriesAfterRetryAfter > 0)
        #expect(report.journal.retriesEarly == 0, "min slack \(report.journal.minimumRetrySlackSeconds ?? 0) s")
        #expect((report.journal.refusalCodes["rate_limited"] ?? 0) > 0, "\(report.journal.refusalCodes)")
        #expect((report.journal.refusalCodes["overloaded"] ?? 0) > 0, "\(report.journal.refusalCodes)")

        // The operations listener stayed responsive: every probe answered, p99 within the bound.
        #expect(Set(report.probes.map(\.name)).isSuperset(of: ["healthz", "ocsp", "admin"]))
        for probe in report.probes {
            #expect(probe.errors == 0, "\(probe.name): \(probe.firstErrors)")
            #expect(probe.latency.count >= 5, "\(probe.name) probed \(probe.latency.count) times")
            #expect(
                probe.latency.p99Ms < Self.probeP99BoundMs,
                "\(probe.name) p99 \(probe.latency.p99Ms) ms, max \(probe.latency.maxMs) ms")
            #expect(probe.latency.p50Ms < Self.probeP50BoundMs, "\(probe.name) p50 \(probe.latency.p50Ms) ms")
        }

        // Memory stayed bounded.
        let memory = try #require(report.memory)
        #expect(memory.peakMiB < Self.peakMemoryBoundMiB, "VmHWM \(memory.peakMiB) MiB")

        // Nothing crashed: it still answers, and stops cleanly on SIGTERM.
        #expect(server.process.isRunning, "devid serve exited during the storm: \(server.stderr())")
        let (_, health) = try await URLSession.shared.data(from: try #require(URL(string: endpoints.opsURL + "/healthz")))
        #expect((health as? HTTPURLResponse)?.statusCode == 200)
        let exit = try await Self.terminate(server)
        #expect(exit.exitedNormally && exit.status == 0, "\(exit); stderr: \(server.stderr().suffix(2_000))")
        #expect(!server.stderr().contains("Fatal error"), "\(server.stderr().suffix(2_000))")

        let total = (clock.now - started).seconds
        print(
            "storm test: \(Self.devices) devices, setup \(Int(setupSeconds)) s (prepare \(Int(prepared.seconds)) s), "
                + "storm served all after \(report.allServedAfterSeconds ?? -1) s, total \(Int(total)) s; "
                + "probes p50/p99 "
                + report.probes.map { "\($0.name) \(Int($0.latency.p50Ms))/\(Int($0.latency.p99Ms)) ms" }
                .joined(separator: ", ")
                + "; VmHWM \(Int(memory.peakMiB)) MiB")
    }

    // MARK: - The reports (the fields the test reads of devid-bench's JSON)

    struct PrepareReport: Decodable {
        var devices: Int
        var enrolled: Int
        var seconds: Double
    }

    struct RunReport: Decodable {
        struct Journal: Decodable {
            var attempts: Int
            var statuses: [String: Int]
            var refusalCodes: [String: Int]
            var backPressure: Int
            var backPressureWithRetryAfter: Int
            var transportErrors: Int
            var retriesAfterRetryAfter: Int
            var retriesEarly: Int
            var minimumRetrySlackSeconds: Double?
        }
        struct Latency: Decodable {
            var count: Int
            var p50Ms: Double
            var p99Ms: Double
            var maxMs: Double
        }
        struct Probe: Decodable {
            var name: String
            var latency: Latency
            var errors: Int
            var firstErrors: [String]
        }
        struct Memory: Decodable {
            var rssAtStartMiB: Double
            var rssMaxMiB: Double
            var peakMiB: Double
        }

        var devices: Int
        var reenrollers: Int
        var checkedIn: Int
        var reenrolled: Int
        var served: Int
        var allServedAfterSeconds: Double?
        var journal: Journal
        var probes: [Probe]
        var memory: Memory?
        var failures: [String]
    }

    // MARK: - Processes

    /// SIGTERM, then the exit (killed and thrown after 60 s).
    static func terminate(_ server: ServeProcess) async throws -> ServeProcess.Exit {
        _ = kill(server.process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(60)
        while server.process.isRunning {
            guard Date() < deadline else {
                server.kill()
                throw ServeError("devid serve did not stop within 60 s of SIGTERM")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return ServeProcess.Exit(
            status: server.process.terminationStatus, exitedNormally: server.process.terminationReason == .exit)
    }

    /// `devid-bench`, next to the `devid` the other CLI tests run.
    static func benchExecutable() throws -> String {
        let path = URL(fileURLWithPath: try ServeCLITests.executable()).deletingLastPathComponent()
            .appendingPathComponent("devid-bench").path
        try #require(FileManager.default.isExecutableFile(atPath: path), "devid-bench not built at \(path)")
        return path
    }

    /// Runs `devid-bench arguments` to completion on a thread of its own, killed after `timeout` seconds.
    static func bench(_ arguments: [String], in directory: String, timeout: TimeInterval) async throws
        -> ServeCLITests.CommandResult
    {
        let path = try benchExecutable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try run(path, arguments, in: directory, timeout: timeout) })
            }
        }
    }

    private static func run(_ path: String, _ arguments: [String], in directory: String, timeout: TimeInterval)
        throws -> ServeCLITests.CommandResult
    {
        // To files, not pipes: the JSON report can be larger than a pipe's buffer.
        let stamp = UUID().uuidString.prefix(8)
        let outPath = "\(directory)/bench-\(stamp).out"
        let errPath = "\(directory)/bench-\(stamp).err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = FileHandle(forWritingAtPath: outPath)
        let err = FileHandle(forWritingAtPath: errPath)
        defer {
            try? out?.close()
            try? err?.close()
        }
        // posix_spawn, not Foundation's Process (SpawnedProcess says why).
        let process = try SpawnedProcess.start(
            path, arguments, environment: ServeCLITests.environment(), directory: directory, stdout: out, stderr: err)
        let killed = ServeCLITests.Flag()
        let watchdog = DispatchWorkItem {
            killed.set()
            process.signal(SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        return ServeCLITests.CommandResult(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "", timedOut: killed.isSet)
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
