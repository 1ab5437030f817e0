import DevIDTesting
import Foundation
import Testing

/// docs/enrollment.md as executable documentation: every command it tells the reader to run, in order, against a
/// real `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo, so the walk first runs that whole section of the README,
/// then every block of the page that holds commands (its `sh` blocks, with their shell functions, and its transcripts),
/// and the output block right after an `sh` block, which shows what its last command printed. The other blocks are the
/// agent's message for a parked device (AgentCLITests) and tables. The page restarts the server with lifetimes of
/// seconds and waits for them to run out: the walk takes a little over a minute.
@Suite("docs/enrollment.md", .serialized)
struct EnrollmentDocTests {
    static let page = "docs/enrollment.md"

    @Test("docs/enrollment.md, every command in order", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-enrollment-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }

        try await walk.runReadmeEnrollADevice()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var ran: [DocWalk.Result] = []
        var afterShell = false
        for block in page.blocks {
            let commands = block.info == "sh" || block.lines.contains { $0.hasPrefix("$ ") }
            // An output block right after an `sh` block shows what its last command printed.
            if commands || (afterShell && block.info.isEmpty) {
                ran += try await walk.run(block)
            }
            afterShell = block.info == "sh"
        }
        // Every exit status is the one the page implies (non-zero exactly for a shown `Error:` line: DocWalk checks
        // it), and no command slipped in or out of the page unnoticed.
        #expect(ran.count == 36, "the page lost or gained commands: \(ran.map(\.command))")
        // The rules the page says its short-lived server shows.
        let renewals = ran.filter { $0.command.hasPrefix("renew ") }.map(\.output)
        #expect(renewals == ["200\n", "200\n", "200\n", "403\n"], "\(renewals)")
        let checkIns = ran.filter { $0.command.hasPrefix("status ") }.map {
            $0.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(checkIns.count == 3 && checkIns[0].contains(#""credentialStatus":"superseded""#), "\(checkIns)")
        #expect(Array(checkIns.dropFirst()) == [
            "credential superseded and its overlap has ended", "credential has expired",
        ])
        let swept = ran.last { $0.command == "devid audit list --action rotation.revoke_superseded" }?.output ?? ""
        #expect(swept.components(separatedBy: "overlap deadline reached").count == 3, "\(swept)")

        try DocWalk.dumpIfAsked(ran)
    }
}
