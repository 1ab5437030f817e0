import DevIDTesting
import Foundation
import Testing

/// docs/simulate.md as executable documentation: every command it shows runs in one shell, in order, with the
/// output compared by shape (see [ReadmeTests]): the simulation's output is deterministic, only the timing line
/// varies. The full seed case (30,000 devices, a year) is shown on the page and in the README; it runs in
/// [SimulateFullScaleTests], alone, because it takes minutes in a debug build.
@Suite("docs/simulate.md", .serialized)
struct SimulateDocTests {
    static let fullScale = "$ devid simulate --quiet --out report"

    @Test("docs/simulate.md, every command in order", .timeLimit(.minutes(8)))
    func walkThePage() async throws {
        let page = try DocFile("docs/simulate.md")
        let work = try TemporaryDirectory(prefix: "devid-simulate-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        // A year of 2000 devices: about 15 s alone in a debug build; a CI rehearsal saw one pass 60 s beside the suite.
        walk.timeouts = [("devid simulate", 240)]
        try await walk.run("alias devid=devid")
        var ran: [DocWalk.Result] = []
        var fullScaleShown = false
        for block in page.blocks where block.lines.contains(where: { $0.hasPrefix("$ ") }) {
            if block.lines.first == Self.fullScale {
                fullScaleShown = true
                continue
            }
            ran += try await walk.run(block)
        }
        #expect(fullScaleShown, "the page shows the full seed case")
        #expect(
            ran.map { String($0.command.prefix(48)) } == [
                "devid simulate --devices 2000 --days 365 --quiet", "devid simulate --print-scenario",
                #"echo '{"rotation": {"lifetimeDays": 90, "renewal"#, "devid simulate --scenario bad.json --out report",
                #"echo '{"rotation": {"lifetimeDays": 90, "graceDa"#, "devid simulate --scenario policy-90d.json --devi",
                #"echo '{"rotation": {"jitterFraction": 0.5}}' > j"#, "devid simulate --scenario jitter.json --devices ",
                "jq -c .scenarios.devid.anomaly_weeks report/summ",
            ], "the page lost or gained commands: \(ran.map(\.command))")
        // The files the page lists are the files the run wrote.
        let table = page.text.components(separatedBy: "\n").filter { $0.hasPrefix("| `") && $0.contains(".svg`") }
        #expect(table.count == 4)
        for name in ["summary.json", "daily.csv", "index.html"] + ["onboarding", "expiry-auth-failures", "blast-radius",
            "expiry-distribution"].flatMap({ ["\($0).svg", "\($0).png"] })
        {
            #expect(FileManager.default.fileExists(atPath: work.file("report/\(name)")), "report/\(name)")
            #expect(page.text.contains(name.hasSuffix(".png") ? String(name.dropLast(4)) : name), "the page names \(name)")
        }
        for day in ["061", "121", "181", "201", "251", "258", "365"] {
            #expect(FileManager.default.fileExists(atPath: work.file("report/dashboard/day-\(day).html")), "day-\(day)")
        }
        #expect(page.text.contains("`dashboard/day-NNN.html`"))
        // The refused scenario wrote nothing over the first report.
        #expect(FileManager.default.fileExists(atPath: work.file("report-90d/summary.json")))
    }
}

/// The README's `devid simulate` (the seed's case study, 30,000 devices for 365 days): its output as the README
/// shows it, and the charts the README and docs/simulate.md show are the ones the tool makes, byte for byte.
@Suite("devid simulate, the full seed case", .serialized)
struct SimulateFullScaleTests {
    static let charts = ["onboarding", "expiry-auth-failures", "blast-radius", "expiry-distribution"]

    @Test("README: devid simulate --quiet --out report, and the committed charts", .timeLimit(.minutes(10)))
    func fullSeedCase() async throws {
        let readme = try DocFile(ReadmeTests.readme)
        let blocks = readme.blocks(in: "## A year of the fleet, simulated")
        let block = try #require(blocks.first { $0.lines.first == SimulateDocTests.fullScale }, "\(blocks)")
        let command = try #require(DocCommand.commands(in: block).first)
        #expect(try DocFile("docs/simulate.md").blocks.contains { $0.lines == [SimulateDocTests.fullScale] })

        let work = try TemporaryDirectory(prefix: "devid-simulate-full")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        try await walk.run("alias devid=devid")
        let result = try await walk.run(command.command, timeout: 540)
        #expect(result.status == 0, "\(result)")
        walk.expectShape(of: result.output, as: command.expected ?? [], command.command, block)

        for chart in Self.charts {
            let made = try Data(contentsOf: URL(fileURLWithPath: work.file("report/\(chart).png")))
            let committed = try Data(
                contentsOf: RunbookTests.packageRoot.appendingPathComponent("docs/images/simulate/\(chart).png"))
            #expect(made == committed, "docs/images/simulate/\(chart).png is what devid simulate makes")
        }
        for image in ["onboarding", "expiry-auth-failures"] {
            #expect(readme.text.contains("](docs/images/simulate/\(image).png)"), "the README shows \(image).png")
        }
    }
}
