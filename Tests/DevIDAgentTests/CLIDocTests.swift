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
/// blocks are usage lines, formats, banners and catalogues of error lines (no command); the command tests check those.
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

        // The README's "Enroll a device", whole.
        for block in try DocFile(ReadmeTests.readme).blocks(in: "## Enroll a device") {
            try await walk.run(block)
        }
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
        if let dump = ProcessInfo.processInfo.environment["DEVID_DOC_DUMP"] {
            // For whoever records the page again: every command and what it printed, as JSON.
            let items = ran.map { ["command": $0.command, "status": String($0.status), "output": $0.output] }
            try JSONSerialization.data(withJSONObject: items).write(to: URL(fileURLWithPath: dump))
        }
    }
}
