public import DevIDCore
public import Foundation

/// Everything `devid simulate` models, read from a JSON scenario file (every key optional: an absent key keeps the
/// default). The defaults are the seed's case study: 30,000 sensors in three regions, MQTT, a new manufacturing lot
/// every month, a year of operation. `docs/simulate.md` explains each parameter.
public struct Scenario: Sendable, Hashable, Codable {
    /// The seed of every random draw: one seed, one fleet, one result (byte-identical `summary.json`).
    public var seed: UInt64 = 1
    public var devices: Int = 30_000
    public var days: Int = 365
    /// The first simulated instant (UTC).
    public var start: Date = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z
    public var regions: [Region] = Region.seedCase
    public var lots = Lots()
    public var offline = Offline()
    public var clocks = Clocks()
    /// The probability that a device loses power in the middle of a rotation: after the server issued its new
    /// certificate and before the device stored it.
    public var powerLossDuringRotation: Double = 0.01
    /// How often a connected device's broker session reconnects (and asks the decision API), and how often a device
    /// whose credential is refused retries: each try counts as one authentication failure.
    public var reconnectsPerDay: Double = 24
    /// The agent's periodic check-in (`checkInInterval`), in hours.
    public var checkInHours: Double = 1
    /// The rotation policy under `devid`; absent keys keep DevID's own defaults (``ProfilePolicy/ldevid``,
    /// ``RotationPolicy``), so a change of those defaults changes the simulation.
    public var rotation = Rotation()
    public var server = Server()
    public var events = Events()
    public var before = Before()

    public init() {}

    public struct Region: Sendable, Hashable, Codable {
        public var name: String
        /// The fraction of devices in this region (normalized over all regions).
        public var share: Double
        /// Network outages per year (Poisson) during which the region's devices reach nothing.
        public var outagesPerYear: Double
        /// The mean length of one outage, in hours (exponential).
        public var outageHours: Double

        public init(name: String, share: Double, outagesPerYear: Double, outageHours: Double) {
            self.name = name
            self.share = share
            self.outagesPerYear = outagesPerYear
            self.outageHours = outageHours
        }

        public static let seedCase = [
            Region(name: "eu", share: 0.4, outagesPerYear: 4, outageHours: 6),
            Region(name: "us", share: 0.35, outagesPerYear: 6, outageHours: 4),
            Region(name: "apac", share: 0.25, outagesPerYear: 12, outageHours: 12),
        ]
    }

    public struct Lots: Sendable, Hashable, Codable {
        /// Lots already in the field on day 0, made one a month before it: the fleet that moves to DevID.
        public var initial: Int = 12
        /// A new lot arrives every this many days; its devices are installed over `installDays`.
        public var everyDays: Int = 30
        public var installDays: Double = 14
        /// Every `tokenLotEvery`-th new lot has no IDevIDs and enrolls with a bulk claim token bound to the lot
        /// (0: none).
        public var tokenLotEvery: Int = 4
        /// How long a bulk claim token lives, in days.
        public var tokenDays: Double = 30
        /// Under `before`, this many consecutive lots share one provisioning secret (a batch).
        public var lotsPerBatch: Int = 3
        public init() {}
    }

    public struct Offline: Sendable, Hashable, Codable {
        /// Times per year a device goes away (unplugged, out of coverage, in storage), Poisson.
        public var perYear: Double = 1.5
        /// How long it stays away: log-normal with this median and 90th percentile, in days, and this maximum.
        public var medianDays: Double = 2
        public var p90Days: Double = 40
        public var maximumDays: Double = 200
        public init() {}
    }

    public struct Clocks: Sendable, Hashable, Codable {
        /// Devices whose clock drifts, and by how much at most (seconds per day, either way).
        public var driftShare: Double = 0.05
        public var maximumDriftSecondsPerDay: Double = 30
        /// RTC resets to 1970 per device per year (a dead backup battery).
        public var rtcResetsPerYear: Double = 0.05
        public init() {}
    }

    public struct Rotation: Sendable, Hashable, Codable {
        public var lifetimeDays: Double?
        public var renewalFraction: Double?
        public var jitterFraction: Double?
        public var overlapDays: Double?
        public var graceDays: Double?
        public init() {}

        /// The policy `devid` runs with: the scenario's values over DevID's defaults.
        public var policy: RotationPolicy {
            let defaults = RotationPolicy()
            return RotationPolicy(
                renewalFraction: renewalFraction ?? defaults.renewalFraction,
                jitterFraction: jitterFraction ?? defaults.jitterFraction,
                overlap: overlapDays.map { $0 * 86_400 } ?? defaults.overlap,
                confidence: defaults.confidence,
                grace: graceDays.map { $0 * 86_400 } ?? defaults.grace,
                maxClockSkew: defaults.maxClockSkew)
        }

        public var lifetime: TimeInterval {
            lifetimeDays.map { $0 * 86_400 } ?? ProfilePolicy.ldevid.lifetime ?? 30 * 86_400
        }
    }

    public struct Server: Sendable, Hashable, Codable {
        /// Enrollments per second one server completes (BENCHMARKS.md, SQLite); above it, `503` with `Retry-After`.
        public var enrollmentsPerSecond: Int = 500
        public var retryAfterSeconds: Double = 10
        public init() {}
    }

    public struct Events: Sendable, Hashable, Codable {
        /// One device's key is extracted (day; nil: never).
        public var deviceCompromiseDay: Int? = 60
        /// A lot's IDevID keys leak: the lot (1-based among all lots, initial ones first).
        public var idevidLeakDay: Int? = 120
        public var idevidLeakLot: Int = 3
        /// The DevID server (and the site's broker) is down for `serverOutageHours`; then everyone reconnects.
        public var serverOutageDay: Int? = 180
        public var serverOutageHours: Double = 6
        /// The newest bulk claim token leaks.
        public var tokenLeakDay: Int? = 200
        /// The issuing CA is suspected compromised: a new one is activated, every device rotates, and the old CA's
        /// certificates are revoked `caRolloverDays` later.
        public var caCompromiseDay: Int? = 250
        public var caRolloverDays: Double = 7
        /// After a revocation, an operator re-provisions each affected device (`devid device reprovision`) within
        /// this many days (uniform).
        public var reprovisionDays: Double = 3
        public init() {}
    }

    /// The old way: a shared secret per batch, manual onboarding, one-year certificates never rotated.
    public struct Before: Sendable, Hashable, Codable {
        public var technicianMinutesPerDevice: Double = 12
        public var technicians: Int = 4
        public var workHoursPerDay: Double = 8
        public var certificateDays: Double = 365
        /// Days until an expired device is reported and queued for a technician.
        public var detectionDays: Double = 2
        public init() {}
    }

    /// Refuses a scenario that cannot run; the reason is one line.
    public func validate() throws(SimulationError) {
        func check(_ ok: Bool, _ reason: String) throws(SimulationError) {
            if !ok { throw SimulationError(reason) }
        }
        try check(devices >= 1 && devices <= 1_000_000, "devices must be between 1 and 1,000,000")
        try check(days >= 1 && days <= 3_650, "days must be between 1 and 3,650")
        try check(!regions.isEmpty && regions.allSatisfy { $0.share >= 0 && $0.outagesPerYear >= 0 && $0.outageHours >= 0 },
            "regions need a share, outages per year and outage hours, none negative")
        try check(regions.contains { $0.share > 0 }, "at least one region needs a positive share")
        try check(lots.initial >= 0 && lots.everyDays >= 1 && lots.installDays >= 0, "lots: initial ≥ 0, everyDays ≥ 1, installDays ≥ 0")
        try check(lots.initial > 0 || lots.everyDays <= days, "no lot arrives: set lots.initial or a shorter lots.everyDays")
        try check(lots.lotsPerBatch >= 1 && lots.tokenLotEvery >= 0 && lots.tokenDays > 0, "lots: lotsPerBatch ≥ 1, tokenLotEvery ≥ 0, tokenDays > 0")
        try check(offline.perYear >= 0 && offline.medianDays > 0 && offline.p90Days >= offline.medianDays && offline.maximumDays > 0,
            "offline: perYear ≥ 0, 0 < medianDays ≤ p90Days, maximumDays > 0")
        try check((0...1).contains(clocks.driftShare) && clocks.rtcResetsPerYear >= 0, "clocks: driftShare in 0...1, rtcResetsPerYear ≥ 0")
        try check((0...1).contains(powerLossDuringRotation), "powerLossDuringRotation must be between 0 and 1")
        try check(reconnectsPerDay > 0 && checkInHours > 0, "reconnectsPerDay and checkInHours must be positive")
        try check(rotation.lifetime >= 3_600, "rotation.lifetimeDays must be at least an hour")
        do { try rotation.policy.validate() } catch { throw SimulationError("rotation: \(error.reason)") }
        try check(server.enrollmentsPerSecond >= 1 && server.retryAfterSeconds >= 0, "server: enrollmentsPerSecond ≥ 1")
        try check(events.idevidLeakLot >= 1 && events.caRolloverDays >= 0 && events.reprovisionDays >= 0 && events.serverOutageHours >= 0,
            "events: idevidLeakLot ≥ 1, caRolloverDays, reprovisionDays and serverOutageHours ≥ 0")
        try check(before.technicians >= 1 && before.technicianMinutesPerDevice > 0 && before.workHoursPerDay > 0
            && before.workHoursPerDay <= 24 && before.certificateDays > 0 && before.detectionDays >= 0,
            "before: technicians ≥ 1; technicianMinutesPerDevice, certificateDays > 0; 0 < workHoursPerDay ≤ 24")
    }

    /// Reads a scenario file: a JSON object whose keys override the defaults, object by object (an array, such as
    /// `regions`, replaces the default whole). An unknown key is refused, so a typo never passes for a default.
    public static func load(_ data: Data) throws(SimulationError) -> Scenario {
        let given: Any
        do { given = try JSONSerialization.jsonObject(with: data) } catch {
            throw SimulationError("the scenario is not valid JSON")
        }
        guard let overrides = given as? [String: Any] else { throw SimulationError("the scenario must be a JSON object") }
        do {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            let defaults = try JSONSerialization.jsonObject(with: encoder.encode(Scenario())) as! [String: Any]
            let merged = try merge(defaults, overrides, path: "")
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let scenario = try decoder.decode(Scenario.self, from: JSONSerialization.data(withJSONObject: merged))
            try scenario.validate()
            return scenario
        } catch let error as SimulationError {
            throw error
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
            let DecodingError.dataCorrupted(context), let DecodingError.keyNotFound(_, context)
        {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw SimulationError("scenario key \(path): wrong type or value")
        } catch {
            throw SimulationError("the scenario could not be read")
        }
    }

    private static func merge(_ base: [String: Any], _ overrides: [String: Any], path: String) throws(SimulationError)
        -> [String: Any]
    {
        var merged = base
        for key in overrides.keys.sorted() {
            let name = path.isEmpty ? key : "\(path).\(key)"
            guard let current = base[key] else { throw SimulationError("unknown scenario key \(name)") }
            if let inner = current as? [String: Any], let given = overrides[key] as? [String: Any] {
                merged[key] = try merge(inner, given, path: name)
            } else {
                merged[key] = overrides[key]
            }
        }
        return merged
    }
}

/// Why a simulation could not run: one line.
public struct SimulationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension Scenario.Rotation {
    // Absent values are written as null so that a scenario file may name them (see ``Scenario/load(_:)``).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(lifetimeDays, forKey: .lifetimeDays)
        try c.encode(renewalFraction, forKey: .renewalFraction)
        try c.encode(jitterFraction, forKey: .jitterFraction)
        try c.encode(overlapDays, forKey: .overlapDays)
        try c.encode(graceDays, forKey: .graceDays)
    }
}
