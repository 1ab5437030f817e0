import ArgumentParser

/// `devid-bench`: release-mode benchmarks of DevID on this machine.
///
/// Run with `swift run -c release devid-bench <enroll|mint|rotate|crl|ocsp> [options]`; BENCHMARKS.md says what each
/// measures and records a run. Everything runs in this process on loopback, in temporary directories that are removed.
@main
struct DevIDBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devid-bench",
        abstract: "DevID benchmarks: EST enrollment and renewal over real mTLS, factory lot minting, CRLs and OCSP.",
        subcommands: [
            EnrollBenchmark.self, MintBenchmark.self, RotateBenchmark.self, CRLBenchmark.self, OCSPBenchmark.self,
            AuthzBenchmark.self, ServerCPUEnrollBenchmark.self,
            StormBenchmark.self, SignBenchmark.self,
        ]
    )
}

/// Options every benchmark takes.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON document on stdout instead of the table.")
    var json = false

    @Option(name: .long, help: "Seconds each crypto baseline operation is timed for.")
    var baselineSeconds: Double = 1.0

    func validate() throws {
        guard (0.05...30).contains(baselineSeconds) else {
            throw ValidationError("--baseline-seconds must be between 0.05 and 30")
        }
    }
}
