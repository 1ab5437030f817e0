import DevIDTesting
import Foundation
import Testing

/// docs/configuration.md as executable documentation: its transcripts run in order in one shell (see [ReadmeTests]),
/// the rotation policy's JSON is saved as the `devid.json` the page starts a server with, the two start-up errors
/// it shows are produced, and every other block is a format or listed in [notRun] with the reason. A block that is
/// none of these fails the test, so a new command cannot slip into the page unrun.
@Suite("docs/configuration.md", .serialized)
struct ConfigurationDocTests {
    static let page = "docs/configuration.md"

    /// The blocks the test does not run, by their first line (trimmed): each needs what a test machine does not have.
    static let notRun: [String: String] = [
        "devid serve": "the zero-configuration start in the foreground: the README's Quick start runs it (ReadmeTests)",
        "devid serve --config /etc/devid/devid.json": "a production layout: /etc/devid, /srv/devid and /run/secrets",
        "export DEVID_DATA_DIR=/srv/devid": "a production layout: /srv/devid and /run/secrets",
        "DEVID_OPS_PORT=9090 devid serve --config /etc/devid/devid.json --ops-port 9191":
            "the production file above; ConfigurationTests checks that the environment overrides the file",
        #"devid serve --data-dir "$(mktemp -d)/data" --est-port 0 --ops-port 0"#:
            "a server in the foreground for scripts: ServeCLITests start every server this way",
        "(umask 077; head -c 32 /dev/urandom | base64 > /run/secrets/devid-ca-passphrase)":
            "the production passphrase file: /run/secrets and the service's user (chown devid)",
    ]

    @Test("docs/configuration.md, every command in order", .timeLimit(.minutes(3)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-configuration-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("data"))
        defer { walk.close() }
        try await walk.run("alias devid=devid")
        // The server re-reads its file on SIGHUP, a few milliseconds after `kill` returns.
        walk.pauses.append(("devid settings show", 1))

        var ran: [DocWalk.Result] = []
        var seenNotRun: Set<String> = []
        var errors: [String] = []
        var previous: DocFile.Block?
        for block in page.blocks {
            let first = (block.lines.first ?? "").trimmingCharacters(in: .whitespaces)
            defer { previous = block }
            if block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                if block.lines.contains(where: { $0.contains("--config devid.json") }) {
                    // The JSON block just before is the file this one starts the server with.
                    let json = try #require(previous, "the rotation policy's JSON precedes the command")
                    #expect(json.info == "json")
                    try json.lines.joined(separator: "\n").write(
                        toFile: work.file("devid.json"), atomically: true, encoding: .utf8)
                }
                ran += try await walk.run(block)
            } else if Self.notRun[first] != nil {
                seenNotRun.insert(first)
            } else if block.info == "json" {
                continue
            } else if first.hasPrefix("Error: cannot start: ") {
                errors.append(first)
            } else {
                Issue.record("docs/configuration.md:\(block.line): a block that is neither run nor listed: \(first)")
            }
        }
        #expect(seenNotRun == Set(Self.notRun.keys), "a listed block left the page")
        #expect(
            ran.map { String($0.command.split(separator: " ").first ?? "") } == [
                "DEVID_LDEVID_RENEWAL_FRACTION=1.5", "DEVID_LDEVID_JITTER_FRACTION=0.2", "devid",
                // Changing settings without a restart: in the registry, then through the file and SIGHUP.
                "devid", "devid", "devid", "devid", "sed", "kill", "devid",
            ], "the page lost or gained commands: \(ran.map(\.command))")

        // The two start-up errors, produced on the data directory the page's server created (stopped first).
        try await walk.run("kill -INT %1; wait %1")
        #expect(
            errors == [
                "Error: cannot start: no CA passphrase: set DEVID_CA_PASSPHRASE or DEVID_CA_PASSPHRASE_FILE (or restore ./data/secrets/ca-passphrase)",
                "Error: cannot start: private key could not be decrypted with this passphrase",
            ], "\(errors)")
        let moved = try await walk.run("mv data/secrets/ca-passphrase ca-passphrase.saved")
        #expect(moved.status == 0, "\(moved)")
        let missing = try await walk.run("devid serve --data-dir ./data --est-port 0 --ops-port 0")
        #expect(missing.status == 1 && missing.output == errors[0] + "\n", "\(missing)")
        let wrong = try await walk.run("DEVID_CA_PASSPHRASE=not-the-passphrase devid serve --data-dir data --est-port 0 --ops-port 0")
        #expect(wrong.status == 1 && wrong.output == errors[1] + "\n", "\(wrong)")
    }
}
