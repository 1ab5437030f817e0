import DevIDCore
import DevIDStore
import Foundation
import Testing

@testable import DevIDSimulator

/// `devid simulate` on small fleets: what the issue asks the two worlds to show, determinism, the report files, and
/// that the `devid` world runs DevID's own rules on a real registry.
@Suite("Simulation")
struct SimulationTests {
    /// 500 devices for `days` days, the seed case's parameters otherwise.
    static func small(days: Int = 120, _ change: (inout Scenario) -> Void = { _ in }) -> Scenario {
        var scenario = Scenario()
        scenario.devices = 500
        scenario.days = days
        change(&scenario)
        return scenario
    }

    static func noEvents(_ scenario: inout Scenario) {
        scenario.events.deviceCompromiseDay = nil
        scenario.events.idevidLeakDay = nil
        scenario.events.serverOutageDay = nil
        scenario.events.tokenLeakDay = nil
        scenario.events.caCompromiseDay = nil
    }

    @Test("devid: no expiry failures; before: the wave starts the day the first batch's certificates expire")
    func expiryFailures() async throws {
        let report = try await Simulation.run(Self.small())
        let devid = try #require(report.summary.scenarios["devid"])
        let before = try #require(report.summary.scenarios["before"])
        #expect(devid.expiryAuthFailures == 0)
        #expect(devid.authFailuresByReason["expired"] == nil)
        #expect(devid.renewals > 1_000, "500 devices renew every ~20 days")
        #expect(devid.powerLossRecoveries > 0, "1 % of rotations lose power and finish on the next wake")
        #expect(before.expiryAuthFailures > 1_000)

        let expiring = try #require(report.daily["before_expiring"])
        let failures = try #require(report.daily["before_expiry_auth_failures"])
        let firstExpiry = try #require(expiring.firstIndex { $0 > 0 })
        let firstFailure = try #require(failures.firstIndex { $0 > 0 })
        #expect(firstFailure - firstExpiry <= 1, "failures begin when the certificates expire (day \(firstExpiry))")
        // Those first certificates are the oldest lot's: made a year before day 0, onboarded by hand, one year valid.
        let fleet = Fleet(report.scenario)
        let oldest = fleet.lots[0]
        #expect(Double(firstExpiry) * 86_400 >= oldest.madeAt + 365 * 86_400)
        #expect(Double(firstExpiry) * 86_400 < oldest.madeAt + 365 * 86_400 + report.scenario.lots.installDays * 86_400 + 2 * 86_400)
    }

    @Test("devid: every device away beyond grace comes back by IDevID bootstrap, on its own")
    func awayBeyondGrace() async throws {
        let scenario = Self.small(days: 180) { scenario in
            Self.noEvents(&scenario)
            scenario.offline.perYear = 2
            scenario.offline.medianDays = 55
            scenario.offline.p90Days = 80
            scenario.offline.maximumDays = 90
            scenario.lots.tokenLotEvery = 0
            scenario.powerLossDuringRotation = 0
        }
        let devid = try #require(try await Simulation.run(scenario).summary.scenarios["devid"])
        #expect(devid.devicesOfflineBeyondGrace > 20)
        #expect(devid.bootstrapRecoveries == devid.devicesOfflineBeyondGrace)
        #expect(devid.lateRenewals > 0, "devices away less than lifetime + grace renew late instead")
        #expect(devid.expiryAuthFailures == 0)
        #expect(devid.strandedDevices.isEmpty, "\(devid.strandedDevices)")
    }

    @Test("A leaked lot revokes that lot under devid, the whole batch before; one stolen key, one device")
    func blastRadius() async throws {
        let scenario = Self.small(days: 130)
        let report = try await Simulation.run(scenario)
        let devid = try #require(report.summary.scenarios["devid"])
        let before = try #require(report.summary.scenarios["before"])
        let fleet = Fleet(scenario)
        let lot = fleet.lots[scenario.events.idevidLeakLot - 1]
        let batch = fleet.lots.filter { $0.batch == lot.batch }.map(\.devices.count).reduce(0, +)
        #expect(batch > lot.devices.count)
        #expect(devid.blastRadiusDevices["idevid_lot_leak"] == lot.devices.count)
        #expect(before.blastRadiusDevices["idevid_lot_leak"] == batch)
        #expect(devid.blastRadiusDevices["device_compromise"] == 1)
        #expect((before.blastRadiusDevices["device_compromise"] ?? 0) > 1)
        // The lot's devices are re-provisioned by an operator when they are online (within the 10 days left, for
        // nearly all) and enroll again with a one-device claim token.
        #expect(devid.reprovisions <= lot.devices.count + 1)
        #expect(devid.reprovisions >= lot.devices.count * 3 / 4)
        #expect(devid.bootstraps >= devid.reprovisions - 3)
    }

    @Test("One seed, byte-identical summary.json and daily.csv; another seed, another fleet")
    func determinism() async throws {
        let first = try await Simulation.run(Self.small(days: 60))
        let second = try await Simulation.run(Self.small(days: 60))
        #expect(first.summaryJSON == second.summaryJSON)
        #expect(first.csv == second.csv)
        let other = try await Simulation.run(Self.small(days: 60) { $0.seed = 2 })
        #expect(other.summaryJSON != first.summaryJSON)
    }

    @Test("DevID's defaults are the simulation's, and changing a rule (the renewal window) changes the result")
    func realRules() async throws {
        #expect(Scenario().rotation.policy == RotationPolicy())
        #expect(Scenario().rotation.lifetime == ProfilePolicy.ldevid.lifetime)
        let base = try await Simulation.run(Self.small(days: 90))
        let earlier = try await Simulation.run(Self.small(days: 90) { $0.rotation.renewalFraction = 0.4 })
        let baseDevid = try #require(base.summary.scenarios["devid"])
        let earlierDevid = try #require(earlier.summary.scenarios["devid"])
        #expect(Double(earlierDevid.renewals) > Double(baseDevid.renewals) * 1.3)
        // The old way does not run DevID's rules: it does not change.
        #expect(base.summary.scenarios["before"] == earlier.summary.scenarios["before"])
        // Without grace, nobody renews late: every device back after expiry bootstraps.
        let noGrace = try await Simulation.run(Self.small(days: 150) { $0.rotation.graceDays = 0 })
        let noGraceDevid = try #require(noGrace.summary.scenarios["devid"])
        #expect(noGraceDevid.lateRenewals == 0)
        #expect(noGraceDevid.devicesOfflineBeyondGrace > 0)
    }

    @Test("The registry holds what the summary counts, with an intact audit chain")
    func registry() async throws {
        let store = MemoryStore(auditKey: AuditKey(secret: [UInt8](repeating: 7, count: 32)))
        let report = try await Simulation.run(Self.small(days: 90), store: store)
        let devid = try #require(report.summary.scenarios["devid"])
        #expect(try await store.credentialCount() == devid.enrollments + devid.renewals + devid.bootstraps)
        #expect(try await store.verifyAuditChain() == nil)
        #expect(devid.notes["audit_events"] ?? 0 > devid.renewals)
        // Superseded credentials were revoked by the sweeper once their successors were confirmed.
        let counts = try await store.credentialCounts(now: report.scenario.start.addingTimeInterval(90 * 86_400))
        #expect((counts[.revoked] ?? 0) > devid.renewals / 2)
        #expect((counts[.active] ?? 0) <= report.summary.devices)
    }

    @Test("The report: summary.json with the issue's keys, daily.csv, charts that hold the series, index.html")
    func reportFiles() async throws {
        let report = try await Simulation.run(Self.small(days: 130), dashboard: true)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("devid-sim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let written = try report.write(to: directory)
        let charts = ["onboarding", "expiry-auth-failures", "blast-radius", "expiry-distribution"]
        // The dashboard at the end of the device compromise's day, the lot leak's and the last day.
        let dashboards = ["dashboard/style.css", "dashboard/day-061.html", "dashboard/day-121.html", "dashboard/day-130.html"]
        #expect(
            Set(written)
                == Set(["summary.json", "daily.csv", "index.html"] + charts.flatMap { ["\($0).svg", "\($0).png"] } + dashboards))

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("summary.json")))
        let scenarios = try #require((json as? [String: Any])?["scenarios"] as? [String: [String: Any]])
        for name in ["before", "devid"] {
            for key in [
                "expiry_auth_failures", "auth_failures_by_reason", "onboarding_seconds_p50", "onboarding_seconds_p90",
                "blast_radius_devices", "devices_offline_beyond_grace", "bootstrap_recoveries", "renewals",
                "peak_enrollments_per_second",
            ] {
                #expect(scenarios[name]?[key] != nil, "\(name).\(key)")
            }
        }

        // The CSV's columns are the charts' series.
        let rows = try String(contentsOf: directory.appendingPathComponent("daily.csv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = try #require(rows.first)
        #expect(rows.count == 131)
        func column(_ name: String) throws -> [String] {
            let index = try #require(header.firstIndex(of: name))
            return rows.dropFirst().map { $0[index] }
        }
        let failures = try Self.series(in: directory, "expiry-auth-failures.svg")
        #expect(failures["before"] == (try column("before_expiry_auth_failures")))
        #expect(failures["devid"] == (try column("devid_expiry_auth_failures")))
        let expiring = try Self.series(in: directory, "expiry-distribution.svg")
        #expect(expiring["devid"] == (try column("devid_expiring")))
        let devid = try #require(report.summary.scenarios["devid"])
        let before = try #require(report.summary.scenarios["before"])
        let radius = try Self.series(in: directory, "blast-radius.svg")
        let events = ["device_compromise", "idevid_lot_leak"]
        #expect(radius["devid"] == events.map { String(devid.blastRadiusDevices[$0]!) })
        #expect(radius["before"] == events.map { String(before.blastRadiusDevices[$0]!) })
        let onboarding = try Self.series(in: directory, "onboarding.svg")
        #expect(onboarding["before"]?.count == 2)
        #expect(Double(onboarding["before"]?[0] ?? "") == (before.onboardingSecondsP50 / 36).rounded() / 100)

        for chart in charts {
            let png = try [UInt8](Data(contentsOf: directory.appendingPathComponent("\(chart).png")))
            #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            #expect(png[16..<24].elementsEqual([0, 0, 3, 0x20, 0, 0, 1, 0xC2]), "800 × 450")
        }
        let html = try String(contentsOf: directory.appendingPathComponent("index.html"), encoding: .utf8)
        for chart in charts { #expect(html.contains("src=\"\(chart).svg\"")) }
        #expect(html.contains("summary.json") && html.contains("daily.csv"))
        #expect(html.contains("href=\"dashboard/day-121.html\""))
    }

    @Test("The dashboard shows the simulated history as a live one: the lot leak's revoked devices, its enrollments")
    func dashboardHistory() async throws {
        let report = try await Simulation.run(Self.small(days: 130), dashboard: true)
        let pages = Dictionary(uniqueKeysWithValues: report.dashboards.map { ($0.name, $0.html) })
        #expect(pages.keys.sorted() == ["day-061", "day-121", "day-130"])
        let leak = try #require(pages["day-121"])
        #expect(leak.contains("Identity health: all tenants"))
        #expect(leak.contains("As of <time datetime=\"2027-05-01T23:59:59Z\">"), "the end of day 121 of 2027")
        #expect(leak.contains("href=\"style.css\""))
        // The leaked lot's devices are refused at the broker and at EST that day: the failure chart's table has a
        // revoked column with counts, and the enrollment chart counts bootstraps (their re-provisioning).
        let failures = try #require(leak.components(separatedBy: "id=\"failures\"").dropFirst().first)
        #expect(failures.contains(">revoked</th>"))
        let revokedCounts = failures.components(separatedBy: "</tbody>")[0].matches(of: /<td>(\d+)<\/td><td>(\d+)<\/td><\/tr>/)
        #expect(revokedCounts.contains { Int($0.output.1)! > 0 }, "revoked failures on the leak's day")
        #expect(leak.contains(">bootstrap<") || leak.contains("bootstrap"))
        // Before the leak, no revoked failures but the compromised device's.
        let before = try #require(pages["day-061"])
        #expect(before.contains("As of <time datetime=\"2027-03-02T23:59:59Z\">"))
    }

    /// Each series' `data-values` in an SVG the report wrote, by series name.
    static func series(in directory: URL, _ file: String) throws -> [String: [String]] {
        let svg = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
        var found: [String: [String]] = [:]
        for part in svg.components(separatedBy: "data-series=\"").dropFirst() {
            let name = String(part.prefix { $0 != "\"" })
            guard let range = part.range(of: "data-values=\"") else { continue }
            let values = part[range.upperBound...].prefix { $0 != "\"" }
            found[name] = values.split(separator: ",").map(String.init)
        }
        return found
    }

    @Test("A scenario file overrides the defaults key by key")
    func scenarioFile() throws {
        let scenario = try Scenario.load(
            Data(#"{"devices": 1000, "lots": {"initial": 2}, "rotation": {"lifetimeDays": 90}, "start": "2028-03-01T00:00:00Z"}"#.utf8))
        #expect(scenario.devices == 1_000)
        #expect(scenario.lots.initial == 2)
        #expect(scenario.lots.everyDays == Scenario().lots.everyDays)
        #expect(scenario.rotation.lifetime == 90 * 86_400)
        #expect(scenario.rotation.policy.renewalFraction == RotationPolicy().renewalFraction)
        #expect(scenario.start == Date(timeIntervalSince1970: 1_835_481_600))
    }

    @Test(
        "A bad scenario is refused with one line",
        arguments: [
            (#"{"devics": 5}"#, "unknown scenario key devics"),
            (#"{"lots": {"inital": 1}}"#, "unknown scenario key lots.inital"),
            (#"{"devices": "many"}"#, "scenario key devices: wrong type or value"),
            (#"{"devices": 0}"#, "devices must be between 1 and 1,000,000"),
            (#"[1]"#, "the scenario must be a JSON object"),
            (#"{"#, "the scenario is not valid JSON"),
            (#"{"rotation": {"renewalFraction": 1.5}}"#, "rotation: renewal fraction must be between 0 and 1"),
            (#"{"regions": []}"#, "regions need a share, outages per year and outage hours, none negative"),
        ])
    func badScenario(text: String, reason: String) {
        #expect(throws: SimulationError(reason)) { try Scenario.load(Data(text.utf8)) }
    }
}
