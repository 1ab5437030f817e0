import DevIDTesting
import Foundation
import Testing

/// docs/operations.md as executable documentation: the commands it shows run in one shell against a real
/// `devid serve` started as the page says its examples were (`DEVID_LIMITS_SOURCE_PER_SECOND=0.2
/// DEVID_LIMITS_SOURCE_BURST=2`), with the output compared by shape (see [ReadmeTests]). The blocks that show a
/// situation a walk cannot bring about quickly are listed in [illustrations] with the test that covers them; a
/// block that is none of these fails the test.
@Suite("docs/operations.md", .serialized)
struct OperationsDocTests {
    static let page = "docs/operations.md"

    /// Blocks not run, by their first line, and where what they show is tested.
    static let illustrations: [String: String] = [
        "$ devid agent enroll --server https://127.0.0.1:8443 --trust-bundle devid-data/ca/root.crt \\":
            "needs enrollments in flight at the cap: BackpressureTests checks the server's 503, its Retry-After and body",
        "$ sqlite3 devid-data/registry.sqlite \\":
            "the minute's summary rows: AnonymousFailureAuditTests checks their form and counts",
        #"$ curl -s http://127.0.0.1:8080/readyz"#: "a registry that does not answer: HealthTests",
        "$ devid agent enroll --server https://127.0.0.1:8443 --trust-bundle root.crt --state-dir st2 --token devid_ct_... --device dev2":
            "a registry on a full disk: DiskFullTests fills a 16 MB tmpfs and checks the 503, its reason and Retry-After",
        "2026-12-06T00:19:34+0000 error devid: error=store storageFull: record issuance: disk full [DevIDServer] registry disk full: writes are refused (enrollments answer 503 with Retry-After) until space returns":
            "the two log lines of a disk-full episode: DiskFullTests checks both",
    ]

    @Test("docs/operations.md, every command in order", .timeLimit(.minutes(3)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-operations-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        try await walk.run("alias devid=devid")
        #expect(page.text.contains("(Both from a server started with `DEVID_LIMITS_SOURCE_PER_SECOND=0.2 DEVID_LIMITS_SOURCE_BURST=2`.)"))
        try await walk.run(
            "DEVID_LIMITS_SOURCE_PER_SECOND=0.2 DEVID_LIMITS_SOURCE_BURST=2 devid serve > devid.log 2>&1 &",
            expectServerStart: true)
        try await walk.run("export DEVID_ADMIN_TOKEN=$(cat devid-data/secrets/admin-token)")

        var ran: [DocWalk.Result] = []
        var seen: Set<String> = []
        for block in page.blocks {
            let first = block.lines.first ?? ""
            // The readiness block that shows a registry which does not answer is the second with its first line.
            let shown = block.lines.contains { $0.contains("registry unavailable") }
            if let _ = Self.illustrations[first], first != #"$ curl -s http://127.0.0.1:8080/readyz"# || shown {
                seen.insert(first)
            } else if block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                if first.hasPrefix("$ curl -sS -i --cacert devid-data/ca/root.crt") {
                    // Empty the per-source bucket right before each command, as the requests before the page's would
                    // have (0.2 tokens a second).
                    let est =
                        "curl -s -o /dev/null -w '%{http_code}' --cacert devid-data/ca/root.crt -H 'Content-Type: application/pkcs10' "
                        + "-H 'Authorization: Bearer devid_ct_nope' --data x https://127.0.0.1:8443/.well-known/est/simpleenroll"
                    let admin =
                        #"curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $DEVID_ADMIN_TOKEN" http://127.0.0.1:8080/v1/admin/ca"#
                    for command in DocCommand.commands(in: block) {
                        let drain = command.command.contains("/v1/admin/") ? admin : est
                        let shown = (command.expected ?? []).map(walk.apply)
                        // A pause of over 5 s between the drain and the command (a loaded machine) refills a token:
                        // the command is then answered, not refused, and is tried again after a new drain.
                        var result: DocWalk.Result
                        var attempts = 0
                        repeat {
                            attempts += 1
                            _ = try await walk.run("for i in 1 2 3 4 5 6 7 8; do [ \"$(\(drain))\" = 429 ] && break; done")
                            result = try await walk.run(command.command)
                        } while attempts < 3 && DocShape.mismatch(printed: result.output, shown: shown) != nil
                        ran.append(result)
                        walk.expectShape(of: result.output, as: command.expected ?? [], command.command, block)
                    }
                    continue
                }
                ran += try await walk.run(block)
            } else if ["json", "yaml", "ini"].contains(block.info) {
                continue
            } else {
                Issue.record("docs/operations.md:\(block.line): a block that is neither run nor listed: \(first)")
            }
        }
        #expect(seen == Set(Self.illustrations.keys), "an illustration left the page")
        #expect(
            ran.map { String($0.command.prefix(40)) } == [
                "head -c 3000000 /dev/zero > big.json", "curl -sS -X POST -H \"Authorization: Bear",
                "curl -sS -i --cacert devid-data/ca/root.", #"curl -sS -i -H "Authorization: Bearer $D"#,
                "curl -s http://127.0.0.1:8080/healthz", "curl -s http://127.0.0.1:8080/readyz",
            ], "the page lost or gained commands: \(ran.map(\.command))")
    }
}
