import ArgumentParser
import DevIDSimulator
import Foundation

/// `devid simulate`: a year of a fleet on virtual time, before DevID and under it. See docs/simulate.md.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a fleet on virtual time, the old way and under DevID's lifecycle, and write a report.",
        discussion: """
            Runs the same fleet twice from one seed: 'before' (a shared secret per batch, manual onboarding, \
            one-year certificates never rotated) and 'devid' (DevID's enrollment, rotation, revocation and decision \
            rules on a registry in memory). Writes summary.json, daily.csv, charts (SVG and PNG) and index.html to \
            --out. The scenario file is JSON; every key is optional (--print-scenario shows them all with their \
            defaults). See docs/simulate.md.
            """)

    @Option(help: "A JSON scenario file; its keys override the defaults.") var scenario: String?
    @Option(help: "Number of devices (overrides the scenario).") var devices: Int?
    @Option(help: "Number of days (overrides the scenario).") var days: Int?
    @Option(help: "Random seed (overrides the scenario): one seed, one result.") var seed: UInt64?
    @Option(help: "The directory for the report.") var out: String?
    @Flag(help: "Print the scenario that would run, as JSON, and exit.") var printScenario = false
    @Flag(help: "No progress bar on stderr (the closing timing line stays).") var quiet = false

    func run() async throws {
        var chosen = Scenario()
        if let scenario {
            guard let data = FileManager.default.contents(atPath: scenario) else {
                throw CLIError("cannot read the scenario file \(scenario)")
            }
            do { chosen = try Scenario.load(data) } catch { throw CLIError("\(scenario): \(error.reason)") }
        }
        if let devices { chosen.devices = devices }
        if let days { chosen.days = days }
        if let seed { chosen.seed = seed }
        do { try chosen.validate() } catch { throw CLIError(error.reason) }
        if printScenario {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(chosen), as: UTF8.self))
            return
        }
        guard let out else { throw CLIError("--out DIR is required (or --print-scenario)") }

        let started = ContinuousClock.now
        let bar = SimulationProgress(enabled: !quiet)
        let report = try await Simulation.run(chosen, dashboard: true) { phase, fraction in bar.show(phase, fraction) }
        let directory = URL(fileURLWithPath: out)
        try report.write(to: directory)
        let elapsed = started.duration(to: .now)
        bar.finish("simulated \(chosen.devices) devices for \(chosen.days) days in \(Self.seconds(elapsed)) s")

        let before = report.summary.scenarios["before"]!
        let devid = report.summary.scenarios["devid"]!
        var rows: [[String]] = [
            ["expiry_auth_failures", "\(before.expiryAuthFailures)", "\(devid.expiryAuthFailures)"],
            ["onboarding_seconds_p50", Self.number(before.onboardingSecondsP50), Self.number(devid.onboardingSecondsP50)],
            ["onboarding_seconds_p90", Self.number(before.onboardingSecondsP90), Self.number(devid.onboardingSecondsP90)],
        ]
        for event in Set(before.blastRadiusDevices.keys).union(devid.blastRadiusDevices.keys).sorted() {
            rows.append([
                "blast_radius_devices." + event, "\(before.blastRadiusDevices[event] ?? 0)",
                "\(devid.blastRadiusDevices[event] ?? 0)",
            ])
        }
        rows += [
            ["devices_offline_beyond_grace", "\(before.devicesOfflineBeyondGrace)", "\(devid.devicesOfflineBeyondGrace)"],
            ["bootstrap_recoveries", "\(before.bootstrapRecoveries)", "\(devid.bootstrapRecoveries)"],
            ["renewals", "\(before.renewals)", "\(devid.renewals)"],
            ["peak_enrollments_per_second", "\(before.peakEnrollmentsPerSecond)", "\(devid.peakEnrollmentsPerSecond)"],
        ]
        Output.table(["", "before", "devid"], rows)
        print("report: \(out.hasSuffix("/") ? out : out + "/")index.html")
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(format: "%.1f", value)
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}

/// A one-line progress bar on stderr, redrawn at most once per percent.
private final class SimulationProgress: @unchecked Sendable {
    private let enabled: Bool
    private var last = ""

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ phase: Simulation.Phase, _ fraction: Double) {
        guard enabled else { return }
        let percent = Int((fraction * 100).rounded(.down))
        let filled = percent / 4
        let line = "\r\(phase.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)) ["
            + String(repeating: "#", count: filled) + String(repeating: " ", count: 25 - filled) + "] \(percent)%"
        guard line != last else { return }
        last = line
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish(_ message: String) {
        FileHandle.standardError.write(Data(((enabled ? "\r\u{1B}[K" : "") + message + "\n").utf8))
    }
}
