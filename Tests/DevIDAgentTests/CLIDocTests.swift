import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// docs/cli.md as executable documentation: every command it tells the reader to run, in order, against a real
/// `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo (the server, tenant `acme`, lot L1 with L1-000001 enrolled
/// into `dev1`, sensor-9 and sensor-10 enrolled with claim tokens), so the walk first runs that section of the README,
/// then every block of the page that holds commands: its `sh` blocks and its transcripts (`$ ` lines). The other
/// blocks are usage lines, formats and banners, and catalogues of error lines (no command), which the walk checks at
/// its end, each line against the command behind it (``errorCommands``).
///
/// What the walk replaces, as a reader would put in their own values:
/// - the `ca init` example's passphrase file and offline medium (`/run/secrets/...`, `/media/offline`), by files in
///   the test's directory;
/// - "From elsewhere"'s server URL and token (`http://devid-admin.internal:8080`, `devid_adm_...`), by this server's;
/// - the claim token id that `devid token revoke` revokes, by the id `devid token create --json` printed;
/// - the checkpoint values in "Checking a checkpoint yourself", by those of the newest checkpoint line printed.
@Suite("docs/cli.md", .serialized)
struct CLIDocTests {
    static let page = "docs/cli.md"
    /// The signed fields and the signature of the checkpoint line the page shows, as its `printf` and `echo` use them.
    static let shownCheckpoint = "117 0712954a8fa448e1d39790be42e9e0f510b0c6a9db6aa76e3a881b604df1a407 1 2026-12-07T03:30:14.569Z"
    static let shownSignature = "XMVTVLXf210EYmGgjordsU5XZkaC7x/KuXM9bUxy4YOjOBsbk6+EYGG+ruU10JJzffH2nVq5lsJylYupEyCcDA=="

    /// A JSON value printed as the shell would pass it on: a string as it is, a number in decimal.
    enum Variant: Decodable {
        case text(String)
        case number(Int)
        case other
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let string = try? container.decode(String.self) {
                self = .text(string)
            } else if let number = try? container.decode(Int.self) {
                self = .number(number)
            } else {
                self = .other
            }
        }
        var text: String? {
            switch self {
            case .text(let string): string
            case .number(let number): String(number)
            case .other: nil
            }
        }
    }

    @Test("docs/cli.md, every command in order", .timeLimit(.minutes(5)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-cli-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }

        // What the `ca init` example expects on the machine: a passphrase file and an offline medium for the root key.
        let secrets = work.file("run-secrets")
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work.file("offline"), withIntermediateDirectories: true)
        #expect(
            FileManager.default.createFile(
                atPath: "\(secrets)/devid-ca-passphrase", contents: Data("correct horse battery staple\n".utf8),
                attributes: [.posixPermissions: 0o600]))
        walk.extra = [
            ("/run/secrets/devid-ca-passphrase", "\(secrets)/devid-ca-passphrase"),
            ("/media/offline", work.file("offline")),
            ("http://devid-admin.internal:8080", "http://127.0.0.1:8080"),
            ("DEVID_ADMIN_TOKEN=devid_adm_...", "DEVID_ADMIN_TOKEN=$(cat devid-data/secrets/admin-token)"),
        ]

        try await walk.runReadmeEnrollADevice()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var ran: [DocWalk.Result] = []
        for block in page.blocks where block.info == "sh" || block.lines.contains(where: { $0.hasPrefix("$ ") }) {
            if block.lines.first == "$ devid audit verify" {
                // The server signs its first checkpoint a minute after it started: the page's `audit verify` shows
                // the chain checked against it, and "Checking a checkpoint yourself" checks it. A reader who got here
                // sooner waits for it.
                _ = try await walk.waitForFile(
                    "devid-demo/devid-data/audit/checkpoints.jsonl", containing: "devid-audit-checkpoint-v1",
                    timeout: 90)
            }
            let results = try await walk.run(block)
            ran += results
            for result in results {
                if result.command.hasPrefix("devid token create"), result.command.hasSuffix("--json") {
                    // `devid token revoke` revokes the token just created.
                    let created = try JSONDecoder().decode([String: Variant].self, from: Data(result.output.utf8))
                    walk.extra.append(("ct_yiakyuhzs2", created["id"]?.text ?? "<no id>"))
                }
                if result.command == "tail -1 devid-data/audit/checkpoints.jsonl" {
                    // The message and signature the page checks are those of the checkpoint it shows.
                    let line = try JSONDecoder().decode([String: Variant].self, from: Data(result.output.utf8))
                    let fields = ["sequence", "hash", "keyedFrom", "time"].map { line[$0]?.text ?? "" }
                    walk.extra += [
                        (Self.shownCheckpoint, fields.joined(separator: " ")),
                        (Self.shownSignature, line["signature"]?.text ?? ""),
                    ]
                }
            }
        }
        // Every exit status is the one the page implies (non-zero exactly for a shown `Error:` line: DocWalk checks
        // it), and no command slipped in or out of the page unnoticed.
        #expect(ran.count == 94, "the page lost or gained commands: \(ran.map(\.command))")
        // What the page says its examples show.
        func output(_ prefix: String) -> String { ran.last { $0.command.hasPrefix(prefix) }?.output ?? "<not run>" }
        #expect(output("echo $?") == "0\n")
        #expect(output("openssl pkeyutl -verify") == "Signature Verified Successfully\n")
        #expect(output("devid cert status --serial \"$SERIAL\" --json").contains(#""listed" : true"#))
        #expect(output("devid crl fetch --name issuing --serial").contains(": listed (keyCompromise"))
        #expect(output("devid agent enroll").contains("enrolled device L1-000002 (tenant acme)"))
        // The secret comes before its note in one stream (stdout is flushed first), as the page shows.
        #expect(output("devid token create --tenant acme --device sensor-11").hasPrefix("devid_ct_"))
        // The catalogues of errors: every line the page shows is what the CLI prints for its command.
        try await Self.checkErrors(page, walk: &walk, ran: ran)

        try DocWalk.dumpIfAsked(ran)
    }
}

extension CLIDocTests {
    /// Every `USAGE:` line of the page is the one `devid ... --help` prints, and the page's first block is the whole
    /// of `devid --help`. The walk above runs the page's commands; these lines are what a reader copies options from.
    @Test("docs/cli.md: every USAGE line and the root help are what the command prints")
    func usageLines() async throws {
        let page = try DocFile(Self.page)
        let root = try #require(page.blocks.first)
        let help = try await AgentCLITests.run(["--help"])
        #expect(help.succeeded, "\(help.stderr)")
        #expect(root.lines.joined(separator: "\n") == help.stdout.trimmingCharacters(in: .newlines), "devid --help")
        var checked = 0
        for block in page.blocks {
            for line in block.lines where line.hasPrefix("USAGE: devid ") && block.line != root.line {
                // The command's words: `devid ca import-key [--data-dir ...` → `ca import-key`.
                let words = line.dropFirst("USAGE: devid ".count).split(separator: " ")
                    .prefix { $0.first?.isLetter == true && $0.first?.isLowercase == true }.map(String.init)
                let printed = try await AgentCLITests.run(words + ["--help"])
                let usage = printed.stdout.split(separator: "\n").first { $0.hasPrefix("USAGE: ") }.map(String.init)
                #expect(usage == line, "\(block): `devid \(words.joined(separator: " ")) --help` prints \(usage ?? "none")")
                checked += 1
            }
        }
        #expect(checked >= 47, "the page lost its usage lines: \(checked)")
    }

    /// The page's catalogues of errors (blocks of `Error:` lines, no command), each line with the heading it is under.
    static func catalogued(_ page: DocFile) -> [(heading: String, line: String)] {
        page.blocks.filter { block in
            block.info.isEmpty && !block.lines.isEmpty && block.lines.allSatisfy { $0.hasPrefix("Error: ") }
        }.flatMap { block in block.lines.map { (block.heading, $0) } }
    }

    /// The command behind each catalogued error, by heading and line, run in the walk's shell after the page (its
    /// `DEVID_SERVER` and `DEVID_ADMIN_TOKEN` exported by "From elsewhere"; `$AUDITOR` and `$ACME_OPS` made by
    /// ``checkErrors``). "cannot reach" runs last, after the server was stopped.
    static let errorCommands: [String: [String: String]] = [
        "## Conventions": [
            "Error: no running server found: start `devid serve --data-dir ./devid-data` or pass --server / DEVID_SERVER":
                "(cd empty && unset DEVID_SERVER DEVID_ADMIN_TOKEN && devid tenant list)",
            "Error: no admin token: set DEVID_ADMIN_TOKEN (or run on the server's machine with --data-dir)":
                "(cd empty && unset DEVID_ADMIN_TOKEN && devid tenant list)",
            "Error: cannot reach http://127.0.0.1:8080: connection refused": "devid tenant list",
            "Error: server answered 401: invalid admin token":
                "DEVID_ADMIN_TOKEN=devid_adm_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb devid tenant list",
            "Error: server answered 401: admin token is revoked": #"DEVID_ADMIN_TOKEN="$CI_DEPLOY" devid tenant list"#,
            "Error: server answered 403: role auditor may not POST /v1/admin/rotate":
                #"DEVID_ADMIN_TOKEN="$AUDITOR" devid rotate --lot L1"#,
            "Error: server answered 403: admin token acme-ops may not act on tenant beta":
                #"DEVID_ADMIN_TOKEN="$ACME_OPS" devid device list --tenant beta"#,
        ],
        "## devid device import": [
            "Error: cannot read nofile.json": "devid device import nofile.json",
            "Error: e.json is not a DevID lot manifest": "devid device import e.json",
            "Error: server answered 404: unknown tenant nope": "devid device import nope.json",
            "Error: server answered 422: the manifest's manufacturer CA is not trusted by this server":
                "devid device import untrusted.json",
            "Error: server answered 409: import devices: the lot of device L2-000001 belongs to another tenant":
                "devid device import globex-l2.json",
        ],
        "## devid token create": [
            "Error: server answered 404: unknown tenant nope": "devid token create --tenant nope --device d1",
            "Error: server answered 409: device L1-000002 belongs to another tenant":
                "devid token create --tenant globex --device L1-000002",
            "Error: server answered 400: ttlSeconds must be 1-2592000": "devid token create --tenant acme --device d1 --ttl 31d",
            "Error: server answered 400: tenant globex allows at most 1 use(s) for a token that names no device (devid tenant policy globex --max-token-uses N)":
                "devid token create --tenant globex --uses 2",
            "Error: server answered 400: tenant globex allows at most 86400s for a token that names no device (devid tenant policy globex --max-token-ttl D)":
                "devid token create --tenant globex --ttl 2d",
            "Error: server answered 404: tenant acme has no lot L7": "devid token create --tenant acme --lot L7",
            "Error: invalid --ttl abc: use e.g. 90s, 15m, 1h, 7d": "devid token create --tenant acme --device d1 --ttl abc",
        ],
        "## devid admin-token create": [
            "Error: server answered 400: role must be one of: admin, operator, factory, auditor, broker":
                "devid admin-token create --name x1 --role root",
            "Error: server answered 400: a factory token must be limited to tenants":
                "devid admin-token create --name x2 --role factory",
            "Error: server answered 404: unknown tenant nope": "devid admin-token create --name x3 --role operator --tenant nope",
            "Error: server answered 409: an admin token named acme-ops exists":
                "devid admin-token create --name acme-ops --role operator --tenant acme",
            "Error: invalid --expires-in 2w: use e.g. 12h, 30d, 90d":
                "devid admin-token create --name x4 --role auditor --expires-in 2w",
        ],
        "## devid revoke": [
            "Error: server answered 400: give exactly one of device, lot, tenant, serial, token":
                "devid revoke --lot L1 --tenant acme --dry-run",
            "Error: server answered 400: reason must be one of: unspecified, keyCompromise, caCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aaCompromise":
                "devid revoke --device L1-000001 --reason certificateHold --dry-run",
            "Error: server answered 400: invalid serial (hex expected)": "devid revoke --serial xyz --dry-run",
            "Error: server answered 404: revoke scope: no such device": "devid revoke --device nope",
            "Error: server answered 404: preview revocation: no such lot": "devid revoke --lot L9 --dry-run",
        ],
    ]

    /// Runs the command behind every catalogued error and checks it exits 1 printing exactly that line; a line without
    /// a command, or a command whose line left the page, fails.
    static func checkErrors(_ page: DocFile, walk: inout DocWalk, ran: [DocWalk.Result]) async throws {
        // What the commands need: the revoked ci-deploy token's secret (printed once, by the page's create), an
        // auditor token, a tenant beta and a token limited to acme, and refused manifests made from lot L2's.
        let ciDeploy = ran.last { $0.command.hasPrefix("devid admin-token create --name ci-deploy") }?.output
            .split(separator: "\n").first { $0.hasPrefix("devid_adm_") } ?? "<none>"
        for setup in [
            "mkdir -p empty", "CI_DEPLOY=\(ciDeploy)", "AUDITOR=$(devid admin-token create --name auditor-1 --role auditor)",
            "devid tenant create beta", "ACME_OPS=$(devid admin-token create --name acme-ops --role operator --tenant acme)",
            "echo '{}' > e.json",
            #"sed 's/"tenant" : "acme"/"tenant" : "nope"/' lot-L2/manifest.json > nope.json"#,
            #"sed 's/"manufacturerCASHA256" : "[0-9a-f]*"/"manufacturerCASHA256" : "'$(printf '0%.0s' $(seq 64))'"/' lot-L2/manifest.json > untrusted.json"#,
            #"sed 's/"tenant" : "acme"/"tenant" : "globex"/' lot-L2/manifest.json > globex-l2.json"#,
        ] {
            let result = try await walk.run(setup)
            #expect(result.status == 0, "\(result)")
        }
        var checked = Set<String>()
        var unreachable: (String, String)?
        for (heading, line) in catalogued(page) {
            guard let command = errorCommands[heading]?[line] else {
                Issue.record("docs/cli.md: no command for the error \(line) under \(heading)")
                continue
            }
            checked.insert(heading + line)
            if line.contains("cannot reach") {
                unreachable = (command, line)
                continue
            }
            let result = try await walk.run(command)
            #expect(result.status == 1 && result.output == walk.apply(line) + "\n", "\(heading): \(result)")
        }
        for (heading, lines) in errorCommands {
            for line in lines.keys where !checked.contains(heading + line) {
                Issue.record("docs/cli.md no longer shows \(line) under \(heading)")
            }
        }
        // "DATA/server.json stays after the server stops, which is why a stopped server shows as cannot reach."
        if let (command, line) = unreachable, let pid = walk.endpoints?.pid {
            kill(pid, SIGKILL)
            _ = try await walk.run("wait")
            let result = try await walk.run(command)
            #expect(result.status == 1 && result.output == walk.apply(line) + "\n", "\(result)")
        }
    }
}
