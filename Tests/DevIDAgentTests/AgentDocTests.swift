import DevIDTesting
import Foundation
import Testing

/// docs/agent.md as executable documentation: every command it tells the reader to run, in order, against a real
/// `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo from the moment lot L1 is imported, so the walk first
/// runs that part of the README (its `sh` block and its first transcript), then every block of the page. Each
/// block is one of: commands that run (a transcript of `$ ` lines, or a `sh` block); a `USAGE:` line, compared with
/// the command's `--help`; a block marked `not-run` in its info string, listed in [notRun] with the reason; or
/// output the product prints in a situation the walk does not reach, listed in [illustrations]. A block that is
/// none of these fails the test, so a new command cannot slip into the page unrun.
@Suite("docs/agent.md", .serialized)
struct AgentDocTests {
    static let page = "docs/agent.md"

    /// The blocks the test does not run, by their first line: each needs something a test machine does not have.
    static let notRun: [String: String] = [
        "$ devid agent enroll --server https://devid.example:8443 --trust-bundle /etc/devid/root.crt \\":
            "a real device: its IDevID under /etc/devid and a server named devid.example",
        "devid agent run --state-dir /var/lib/devid \\": "its hook reloads a systemd service with systemctl",
        "# /etc/systemd/system/devid-agent.service": "a systemd unit file, installed on a real device",
    ]

    /// Blocks that show output but no command, by their first line, and how the test checks them.
    static let illustrations: [String: String] = [
        "Error: enrollment failed: simpleenroll refused with HTTP 403: claim token used up":
            "the refusals an enrollment can meet: checked line by line in `errorsShown` below",
        "Error: enrollment failed: TLS with est.example.com failed (cacerts): the server's certificate has expired at the agent's time 2027-11-30T10:00:00Z (valid until 2027-11-25T09:55:00Z)":
            "needs a server certificate that expired, or a device clock years off (DevIDAgentTests ClockResetTLSTests)",
        "... there is no IDevID to bootstrap with: a new claim token is needed (devid agent enroll --token-file FILE)":
            "needs a claim-token device whose LDevID is beyond repair (DevIDAgentTests AwayAndSkewTests)",
    ]

    @Test("docs/agent.md, every command in order", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let readme = try DocFile(ReadmeTests.readme)
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-agent-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }

        // The README up to `devid device import lot-L1/manifest.json`.
        let setup = Array(readme.blocks(in: "## Enroll a device").prefix(2))
        #expect(setup.first?.info == "sh", "\(setup)")
        #expect(setup.last?.lines.contains("$ devid device import lot-L1/manifest.json") == true, "\(setup)")
        for block in setup { try await walk.run(block) }
        #expect(
            page.text.contains("](../README.md#enroll-a-device)"),
            "the page says where its examples start: the README's Enroll a device")

        var seenNotRun: Set<String> = []
        var seenIllustrations: Set<String> = []
        var ran: [DocWalk.Result] = []
        for block in page.blocks {
            let first = block.lines.first ?? ""
            if block.isNotRun {
                #expect(Self.notRun[first] != nil, "\(block) is marked not-run but not listed in AgentDocTests.notRun")
                seenNotRun.insert(first)
            } else if first.hasPrefix("USAGE: devid ") {
                try await expectUsage(first, block, &walk)
            } else if !DocCommand.commands(in: block).isEmpty {
                ran += try await walk.run(block)
            } else if Self.illustrations[first] != nil {
                seenIllustrations.insert(first)
                if first.hasPrefix("Error: enrollment failed: simpleenroll refused") {
                    try await errorsShown(block, &walk)
                }
            } else {
                Issue.record("\(block) is neither run, nor marked not-run, nor a listed illustration: \(first)")
            }
        }
        #expect(seenNotRun == Set(Self.notRun.keys), "listed as not run but gone from the page: \(Self.notRun.keys)")
        #expect(seenIllustrations == Set(Self.illustrations.keys), "listed but gone: \(Self.illustrations.keys)")

        // Key lines by name, so that a page that lost its transcripts fails here too.
        func output(_ prefix: String) -> [String] { ran.filter { $0.command.hasPrefix(prefix) }.map(\.output) }
        #expect(output("devid agent enroll").contains { $0.hasPrefix("enrolled device L1-000001 (tenant acme)\n") })
        #expect(output("devid agent enroll").contains { $0.contains(#""deviceID" : "L1-000002""#) }, "the --json example")
        #expect(output("devid agent status --state-dir dev1").contains { $0.hasPrefix("state:    valid\n") })
        #expect(output("devid agent status --state-dir nothing").first?.hasPrefix("state:    missing\n") == true)
        let rotation = try #require(ran.first { $0.command.contains("> rotated.txt") })
        #expect(rotation.status == 0 && rotation.output.contains("identity replaced"), "\(rotation)")
        let hook = try #require(ran.first { $0.command == "cat rotated.txt" })
        let serial = try #require(hook.output.firstMatch(of: #/new LDevID ([0-9a-f]+) in dev1/#)?.1, "\(hook)")
        #expect(
            output("devid agent status --state-dir dev1").last?.contains("serial:   \(serial)\n") == true,
            "the hook ran with the serial of the identity now installed")
        // The crash demo: the hook ran twice for one identity, and the restart finished the rotation.
        let hooks = try #require(ran.first { $0.command == "cat hook.log" }).output.split(separator: "\n")
        #expect(hooks.count == 2 && hooks.first == hooks.last, "\(hooks)")
        #expect(
            output("devid agent status --state-dir dev1").contains { $0.contains("\nprevious: complete, serial ") },
            "after kill -9 during the hook, the replaced identity is kept until the new one is confirmed")
        try await walk.stopServer(with: "kill -INT %1", log: "devid.log")
    }

    /// A `USAGE:` line as `devid ... --help` prints it.
    private func expectUsage(_ usage: String, _ block: DocFile.Block, _ walk: inout DocWalk) async throws {
        let command = try #require(usage.firstMatch(of: #/^USAGE: (devid(?: [a-z][a-z-]*)+)/#)?.1, "\(usage)")
        let help = try await walk.run("\(command) --help")
        let printed = help.output.split(separator: "\n").first { $0.hasPrefix("USAGE: ") }.map(String.init)
        #expect(printed == usage, "\(block): `\(command) --help` prints \(printed ?? "no USAGE line")")
    }

    /// The refusals the page lists after `devid agent enroll`, each produced the way a device meets it. Lines the
    /// walk cannot produce are named here.
    private func errorsShown(_ block: DocFile.Block, _ walk: inout DocWalk) async throws {
        let enroll = "devid agent enroll --trust-bundle devid-data/ca/root.crt"
        let produce: [(line: String, setup: [String], command: String)] = [
            (
                "Error: enrollment failed: simpleenroll refused with HTTP 401: invalid claim token", [],
                "\(enroll) --server https://127.0.0.1:8443 --state-dir e1 --token devid_ct_x --device s1"
            ),
            (
                "Error: enrollment failed: simpleenroll refused with HTTP 403: device L2-000001 is not in the allowlist",
                ["devid factory mint --lot L2 --tenant acme --count 1 --out lot-L2"],
                "\(enroll) --server https://127.0.0.1:8443 --state-dir e2 --idevid-cert lot-L2/L2-000001/chain.pem --idevid-key lot-L2/L2-000001/idevid.key"
            ),
            (
                "Error: enrollment failed: simpleenroll: the server will decide later: device L2-000001 is waiting for operator approval (devid device approve L2-000001) (retry after 60 s)",
                ["devid tenant policy acme --manual-approval"],
                "\(enroll) --server https://127.0.0.1:8443 --state-dir e2 --label acme --idevid-cert lot-L2/L2-000001/chain.pem --idevid-key lot-L2/L2-000001/idevid.key"
            ),
            (
                "Error: enrollment failed: EST server URL must be https://host[:port], not http://127.0.0.1:8443", [],
                "\(enroll) --server http://127.0.0.1:8443 --state-dir e3 --token devid_ct_x --device s1"
            ),
            (
                "Error: cannot read trust bundle nope.pem", [],
                "devid agent enroll --trust-bundle nope.pem --server https://127.0.0.1:8443 --state-dir e3 --token devid_ct_x --device s1"
            ),
        ]
        // Shown, but checked otherwise: the first line by the README's claim-token transcript; a refused connection
        // names the port, so it is produced on port 1 below.
        let producedElsewhere = [
            "Error: enrollment failed: simpleenroll refused with HTTP 403: claim token used up",
            "Error: enrollment failed: could not reach 127.0.0.1 (cacerts):",
        ]
        for line in block.lines where !line.isEmpty {
            let known = produce.contains { $0.line == line } || producedElsewhere.contains { line.hasPrefix($0) }
            #expect(known, "\(block): the test does not know how to produce \"\(line)\"")
        }
        for scenario in produce {
            #expect(block.lines.contains(scenario.line), "\(block) no longer shows \"\(scenario.line)\"")
            for setup in scenario.setup {
                let result = try await walk.run(setup)
                #expect(result.status == 0, "\(result)")
            }
            let result = try await walk.run(scenario.command)
            #expect(result.status != 0, "\(result)")
            walk.expectShape(of: result.output, as: [scenario.line], scenario.command, block)
        }
        let refused = try await walk.run("\(enroll) --server https://127.0.0.1:1 --state-dir e4 --token x --device s1")
        let shown = try #require(block.lines.first { $0.hasPrefix(producedElsewhere[1]) })
        // The page shows the refusal for the default port; nothing listens on port 1.
        #expect(refused.output == shown.replacingOccurrences(of: "127.0.0.1:8443", with: "127.0.0.1:1") + "\n", "\(refused)")
    }
}
