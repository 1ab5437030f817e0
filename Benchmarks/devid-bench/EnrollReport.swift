/// What one enrollment costs in public-key operations on this machine, where client and server share the cores.
///
/// With TLS 1.3 and NIOSSL's default groups (X25519MLKEM768 first on both sides), per enrollment:
/// - server: 1 P-256 sign (TLS CertificateVerify), 1 P-256 verify of the IDevID's signature by the manufacturer
///   CA (DevID's verification callback), 1 P-256 verify of the client's CertificateVerify, 1 P-256 verify of the
///   CSR's self-signature, 1 P-256 sign to issue the LDevID, and its half of the key exchange;
/// - client: 1 P-256 sign (its CertificateVerify), P-256 verifies of the server certificate (signed by the
///   issuing CA) and of the server's CertificateVerify, 1 P-384 verify of the issuing CA (signed by the root),
///   and its half of the key exchange.
/// Trust anchors' self-signatures are not checked by either side.
struct EnrollmentFloor: Codable, Sendable {
    var p256SignsPerEnrollment = 3
    var p256VerifiesPerEnrollment = 5
    var p384VerifiesPerEnrollment = 1
    var keyExchangesPerEnrollment = 1
    var serverP256SignsPerEnrollment = 2
    var serverP256VerifiesPerEnrollment = 3
    /// One core's time for all of the above.
    var cryptoMicrosecondsPerEnrollment: Double
    /// The enrollment rate if the cores did nothing but that crypto.
    var cryptoCeilingEnrollmentsPerSecond: Double
    var fractionOfP256SignRateOneCore: Double
    var fractionOfP256SignRateAllCores: Double
    var fractionOfP256VerifyRateOneCore: Double
    var fractionOfP256VerifyRateAllCores: Double
    var fractionOfCryptoCeiling: Double
    /// Modeled crypto time over measured CPU time per enrollment.
    var cryptoShareOfCPUTime: Double
    /// Enrollments/s over the rate of serialized 4 KiB fsyncs: how close the run would be to the single-writer
    /// ceiling if every registry commit were fsynced (it is not: GRDB's WAL mode uses `synchronous=NORMAL`).
    var fractionOfFsyncRate: Double

    init(baseline: CryptoBaseline, run: EnrollmentRun) {
        self.init(
            baseline: baseline, rate: run.enrollmentsPerSecond, cpuMilliseconds: run.cpuMillisecondsPerEnrollment,
            fsyncsPerSecond: run.fsync.fsyncsPerSecond)
    }

    /// For any run whose requests cost what an enrollment does, give or take P-384 verifies: `rate` requests per
    /// second at `cpuMilliseconds` of process CPU each. (A renewal over LDevID mTLS costs the same: the server anchors
    /// the issuing CA, so it verifies no P-384 signature per handshake.)
    init(
        baseline: CryptoBaseline, rate: Double, cpuMilliseconds: Double, fsyncsPerSecond: Double,
        p384Verifies: Int = 1
    ) {
        p384VerifiesPerEnrollment = p384Verifies
        cryptoMicrosecondsPerEnrollment =
            Double(p256SignsPerEnrollment) * baseline.cost(CryptoBaseline.p256Sign)
            + Double(p256VerifiesPerEnrollment) * baseline.cost(CryptoBaseline.p256Verify)
            + Double(p384VerifiesPerEnrollment) * baseline.cost(CryptoBaseline.p384Verify)
            + Double(keyExchangesPerEnrollment) * baseline.cost(CryptoBaseline.hybridExchange)
        cryptoCeilingEnrollmentsPerSecond = Double(baseline.cores) * 1e6 / cryptoMicrosecondsPerEnrollment
        let sign = baseline.operation(CryptoBaseline.p256Sign)
        let verify = baseline.operation(CryptoBaseline.p256Verify)
        fractionOfP256SignRateOneCore = rate / sign.opsPerSecondOneCore
        fractionOfP256SignRateAllCores = rate / sign.opsPerSecondAllCores
        fractionOfP256VerifyRateOneCore = rate / verify.opsPerSecondOneCore
        fractionOfP256VerifyRateAllCores = rate / verify.opsPerSecondAllCores
        fractionOfCryptoCeiling = rate / cryptoCeilingEnrollmentsPerSecond
        cryptoShareOfCPUTime = cryptoMicrosecondsPerEnrollment / (cpuMilliseconds * 1_000)
        fractionOfFsyncRate = rate / fsyncsPerSecond
    }
}

struct EnrollReport: Codable, Sendable {
    var benchmark = "enroll"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var run: EnrollmentRun
    var floor: EnrollmentFloor

    init(machine: MachineFacts, baseline: CryptoBaseline, run: EnrollmentRun) {
        self.machine = machine
        self.baseline = baseline
        self.run = run
        self.floor = EnrollmentFloor(baseline: baseline, run: run)
    }

    func render() -> String {
        var setup = Table(title: "devid-bench enroll")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "run",
            "\(run.devices) enrollments, \(run.concurrency) workers, \(run.warmup) warm-up; "
                + "IDevID mTLS, a new TLS connection each")
        setup.add("registry", "\(run.registry), \(run.servers) server\(run.servers == 1 ? "" : "s")")
        setup.add("prepared before timing", "\(fixed(run.prepareSeconds, 2)) s (keys, IDevIDs, TLS contexts, CSRs)")

        var results = Table(title: "Results")
        results.add("wall time", "\(fixed(run.wallSeconds, 3)) s")
        results.add("enrollments/s", fixed(run.enrollmentsPerSecond, 1))
        let latency = run.latency
        results.add(
            "latency ms",
            "p50 \(fixed(latency.p50Ms, 2))  p90 \(fixed(latency.p90Ms, 2))  p99 \(fixed(latency.p99Ms, 2))  "
                + "p99.9 \(fixed(latency.p999Ms, 2))  max \(fixed(latency.maxMs, 2))  (mean \(fixed(latency.meanMs, 2)))")
        results.add(
            "CPU (whole process)",
            "\(fixed(run.cpuSeconds, 2)) s = \(fixed(run.cpuMillisecondsPerEnrollment, 2)) ms per enrollment; "
                + "cores \(percent(run.cpuUtilization)) busy")
        results.add(
            "CPU (whole machine)",
            "\(fixed(run.machineCPUMillisecondsPerEnrollment, 2)) ms per enrollment (every process: servers, client, "
                + "database)")
        results.add(
            "CPU-bound estimate",
            "\(fixed(Double(baseline.cores) * 1_000 / run.cpuMillisecondsPerEnrollment, 0)) enrollments/s "
                + "(\(baseline.cores) cores ÷ CPU per enrollment)"
                + (run.cpuUtilization < 0.9 ? "; cores were not saturated: other processes may have competed" : ""))

        let checks = run.checks
        var checked = Table(title: "Checks (\(checks.passed ? "all passed" : "FAILED"))")
        checked.add(
            "HTTP 200", "\(checks.responses200) of \(run.devices)"
                + (checks.responsesOther.isEmpty ? "" : "; other: \(checks.responsesOther)")
                + (checks.transportErrors == 0 ? "" : "; transport errors: \(checks.transportErrors)"))
        checked.add("LDevID for the CSR key", "\(checks.certificatesForCSRKey) of \(run.devices)")
        checked.add(
            "connections / handshakes",
            "\(checks.connectionsOpened) opened, \(checks.handshakesCompleted) TLS handshakes completed, "
                + "\(checks.closedByServerAfterResponse) closed by the server after the response")
        checked.add("TLS versions", "1.3: \(checks.tls13Connections), 1.2: \(checks.tls12Connections)")
        checked.add(
            "registry credentials",
            "\(checks.registryCredentialsBefore) before the timed run, \(checks.registryCredentialsAfter) after "
                + "(warm-up \(run.warmup) + \(run.devices))")
        for failure in checks.failures { checked.add("FAILED", failure) }
        for error in run.firstErrors { checked.add("error", error) }

        var ratios = Table(title: "Against the crypto floor")
        let sign = baseline.operation(CryptoBaseline.p256Sign)
        let verify = baseline.operation(CryptoBaseline.p256Verify)
        ratios.add(
            "÷ P-256 sign rate",
            "\(percent(floor.fractionOfP256SignRateAllCores)) of \(fixed(sign.opsPerSecondAllCores, 0))/s "
                + "(× \(baseline.cores) cores); \(percent(floor.fractionOfP256SignRateOneCore)) of one core")
        ratios.add(
            "÷ P-256 verify rate",
            "\(percent(floor.fractionOfP256VerifyRateAllCores)) of \(fixed(verify.opsPerSecondAllCores, 0))/s "
                + "(× \(baseline.cores) cores); \(percent(floor.fractionOfP256VerifyRateOneCore)) of one core")
        ratios.add(
            "crypto per enrollment",
            "\(floor.p256SignsPerEnrollment) P-256 signs + \(floor.p256VerifiesPerEnrollment) P-256 verifies + "
                + "\(floor.p384VerifiesPerEnrollment) P-384 verify + \(floor.keyExchangesPerEnrollment) "
                + "X25519MLKEM768 exchange = \(fixed(floor.cryptoMicrosecondsPerEnrollment, 0)) µs of one core")
        ratios.add(
            "crypto ceiling",
            "\(fixed(floor.cryptoCeilingEnrollmentsPerSecond, 0)) enrollments/s on \(baseline.cores) cores; "
                + "measured is \(percent(floor.fractionOfCryptoCeiling)) of it")
        ratios.add("crypto share of CPU", "\(percent(floor.cryptoShareOfCPUTime)) of the measured CPU per enrollment")
        ratios.add(
            "fsync, for reference",
            "4 KiB append + fsync: \(fixed(run.fsync.fsyncsPerSecond, 0))/s "
                + "(\(fixed(run.fsync.microsecondsPerFsync, 0)) µs); the registry commits with synchronous=FULL "
                + "(a WAL sync per commit), and enrollments/s are \(percent(floor.fractionOfFsyncRate)) of that "
                + "single-writer ceiling")

        return [setup.render(), baseline.table().render(), results.render(), checked.render(), ratios.render()]
            .joined(separator: "\n")
    }
}
