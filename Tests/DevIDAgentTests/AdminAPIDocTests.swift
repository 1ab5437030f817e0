import DevIDTesting
import Foundation
import Testing

/// docs/admin-api.md as executable documentation: every command it tells the reader to run, in order, against a real
/// `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo once device L1-000001 has enrolled into `dev1`, so the walk
/// first runs that part of the README, then every block of the page that holds commands: its `sh` blocks and its
/// transcripts (`$ ` lines). The other blocks are formats or pretty-printed answers (```` ```json ````) and
/// catalogues of refusals (a status line and a body, no command): the route tests check those answers.
@Suite("docs/admin-api.md", .serialized)
struct AdminAPIDocTests {
    static let page = "docs/admin-api.md"

    @Test("docs/admin-api.md, every command in order", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-admin-api-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }
        // A revocation is in the served CRL within a second: the certificate's detail, which shows it listed, waits
        // as a reader would.
        walk.pauses.append((#"curl -s -H "Authorization: Bearer $TOKEN" $OPS/v1/admin/certificates/"#, 3))

        // The README up to device L1-000001's enrollment into dev1.
        try await walk.runReadmeThroughFirstEnrollment()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var ran: [DocWalk.Result] = []
        for block in page.blocks where block.info == "sh" || block.lines.contains(where: { $0.hasPrefix("$ ") }) {
            ran += try await walk.run(block)
        }
        // Every command succeeded (exit 0; curl without -f exits 0 on an HTTP refusal too), and none slipped in or out
        // of the page unnoticed.
        for result in ran where result.status != 0 {
            Issue.record("`\(result.command)` exited \(result.status): \(result.output)")
        }
        #expect(ran.count == 63, "the page lost or gained commands: \(ran.map(\.command))")
        // The page's refusals and states are the ones it says it shows.
        func output(_ prefix: String) -> String { ran.last { $0.command.hasPrefix(prefix) }?.output ?? "<not run>" }
        #expect(output(#"curl -si -X POST -H "Authorization: Bearer $AUDITOR""#).hasPrefix("HTTP/1.1 403"))
        #expect(output(#"curl -si -H "Authorization: Bearer $ACME_OPS""#).hasPrefix("HTTP/1.1 403"))
        #expect(output("curl -s -H \"Authorization: Bearer $TOKEN\" $OPS/v1/admin/certificates/").contains(#""listed":true"#))
        #expect(output("curl -s --cacert devid-data/ca/root.crt --cert old-cert.pem").contains(#""credentialStatus":"superseded""#))
        #expect(output("curl -si --cacert devid-data/ca/root.crt --cert dev2/cert.pem").contains("credential is revoked"))

        if let dump = ProcessInfo.processInfo.environment["DEVID_DOC_DUMP"] {
            // For whoever records the page again: every command and what it printed, as JSON.
            let items = ran.map { ["command": $0.command, "status": String($0.status), "output": $0.output] }
            try JSONSerialization.data(withJSONObject: items).write(to: URL(fileURLWithPath: dump))
        }
    }
}
