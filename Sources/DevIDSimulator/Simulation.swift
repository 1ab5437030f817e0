public import DevIDStore
public import Foundation

/// `devid simulate`: one fleet, drawn from the scenario's seed, run twice — the old way (`before`) and under
/// DevID's lifecycle code (`devid`) — on virtual time. `docs/simulate.md` explains the model.
public enum Simulation {
    /// Which world a progress report is about.
    public enum Phase: String, Sendable { case fleet, before, devid, report }

    /// Runs both worlds. `store` is the registry the `devid` world writes (a fresh ``MemoryStore`` by default: a
    /// year of 30,000 devices is over half a million credentials). Deterministic for a given scenario.
    ///
    /// With `dashboard`, the simulated server also keeps DevID's health metrics and history, and the report holds the
    /// dashboard as an auditor would have seen it at the end of each event's day and of the last day.
    public static func run(
        _ scenario: Scenario, store: (any Store)? = nil, dashboard: Bool = false,
        progress: @escaping (Phase, Double) -> Void = { _, _ in }
    ) async throws -> SimulationReport {
        try scenario.validate()
        progress(.fleet, 0)
        let fleet = Fleet(scenario)
        progress(.before, 0)
        let before = BeforeWorld(scenario: scenario, fleet: fleet).run()
        progress(.before, 1)
        var secret = SimulationRandom(seed: scenario.seed, stream: 7)
        let registry = store ?? MemoryStore(auditKey: AuditKey(secret: (0..<32).map { _ in UInt8(truncatingIfNeeded: secret.next()) }))
        let health = dashboard ? try await SimulatedHealth(store: registry, start: scenario.start) : nil
        let world = DevIDWorld(scenario: scenario, fleet: fleet, store: registry, health: health) {
            progress(.devid, $0)
        }
        let devid = try await world.run()
        var report = SimulationReport(scenario: scenario, fleet: fleet, before: before, devid: devid)
        report.dashboards = health?.pages ?? []
        return report
    }
}

/// The totals of one world, as `summary.json` names them.
public struct WorldSummary: Sendable, Hashable, Codable {
    public var expiryAuthFailures: Int
    public var authFailuresByReason: [String: Int]
    public var onboardingSecondsP50: Double
    public var onboardingSecondsP90: Double
    public var onboardedDevices: Int
    public var blastRadiusDevices: [String: Int]
    public var devicesOfflineBeyondGrace: Int
    public var bootstrapRecoveries: Int
    public var renewals: Int
    public var lateRenewals: Int
    /// Enrollments of devices that had an identity before (IDevID bootstrap, a re-provisioning claim token).
    public var bootstraps: Int
    public var enrollments: Int
    public var reprovisions: Int
    public var powerLossRecoveries: Int
    public var clockCorrections: Int
    public var peakEnrollmentsPerSecond: Int
    public var decisions: Int
    public var peakDecisionsPerSecond: Int
    public var strandedDevices: [String: Int]
    /// Weekly snapshots in which DevID's anomaly checks raised a finding, by check.
    public var anomalyWeeks: [String: Int]
    public var notes: [String: Int]

    init(_ result: WorldResult) {
        expiryAuthFailures = result.expiryAuthFailures
        authFailuresByReason = result.authFailuresByReason
        onboardingSecondsP50 = (result.percentile(0.5) * 10).rounded() / 10
        onboardingSecondsP90 = (result.percentile(0.9) * 10).rounded() / 10
        onboardedDevices = result.onboardingSeconds.count
        blastRadiusDevices = result.blastRadius
        devicesOfflineBeyondGrace = result.devicesOfflineBeyondGrace
        bootstrapRecoveries = result.bootstrapRecoveries
        renewals = Int(result.renewals.reduce(0, +))
        lateRenewals = result.lateRenewals
        bootstraps = Int(result.bootstraps.reduce(0, +))
        enrollments = Int(result.enrollments.reduce(0, +))
        reprovisions = Int(result.reprovisions.reduce(0, +))
        powerLossRecoveries = result.powerLossRecoveries
        clockCorrections = result.clockCorrections
        peakEnrollmentsPerSecond = result.enrollmentsBySecond.values.max() ?? 0
        decisions = result.decisions
        peakDecisionsPerSecond = result.decisionsBySecond.values.max() ?? 0
        strandedDevices = result.stranded
        anomalyWeeks = result.anomalies
        notes = result.notes
    }
}

/// What `summary.json` holds.
public struct SimulationSummary: Sendable, Hashable, Codable {
    public var seed: UInt64
    public var devices: Int
    public var days: Int
    public var lots: Int
    public var scenarios: [String: WorldSummary]
}
