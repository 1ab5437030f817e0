import DevIDTesting
import Foundation
import Testing

/// docs/revocation.md as executable documentation: every command it tells the reader to run, in order, against a
/// real `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" (device L1-000001 enrolled into `dev1`), so the walk first
/// runs that section, then every block of the page. Each block is one of: commands that run (a transcript of `$ `
/// lines); a block marked `not-run`, listed in [notRun] with the reason; or a block another test walks, listed in
/// [walkedElsewhere]. A block that is none of these fails the test, so a new command cannot slip into the page
/// unrun.
@Suite("docs/revocation.md", .serialized)
struct RevocationDocTests {
    static let page = "docs/revocation.md"

    /// The blocks the test does not run, by their first line, and why.
    static let notRun: [String: String] = [
        "devid serve --crl-partitions 64        # or crl.partitions / DEVID_CRL_PARTITIONS":
            "a server started with another option; partitioned CRLs are tested by CRLPartitionTests",
    ]

    /// Blocks another test runs, by their first line.
    static let walkedElsewhere: [String: String] = [
        "curl -sS --fail -o services.crl http://127.0.0.1:8080/crl/services.crl":
            "MosquittoDocTests, on the broker certificate its page revoked",
    ]

    @Test("docs/revocation.md, every command in order", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-revocation-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }
        // `openssl verify` refuses the revoked certificate: the page says it exits 2 and shows what it prints.
        walk.refusals = ["openssl verify -crl_check"]
        try await walk.runReadmeEnrollADevice()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var seenNotRun: Set<String> = []
        var seenElsewhere: Set<String> = []
        var ran: [DocWalk.Result] = []
        for block in page.blocks {
            let first = block.lines.first ?? ""
            if block.isNotRun {
                #expect(Self.notRun[first] != nil, "\(block) is marked not-run but not listed in RevocationDocTests")
                seenNotRun.insert(first)
            } else if Self.walkedElsewhere[first] != nil {
                seenElsewhere.insert(first)
            } else if block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                ran += try await walk.run(block)
            } else {
                Issue.record("\(block) is neither run, nor marked not-run, nor walked elsewhere: \(first)")
            }
        }
        #expect(seenNotRun == Set(Self.notRun.keys), "listed as not run but gone from the page: \(Self.notRun.keys)")
        #expect(seenElsewhere == Set(Self.walkedElsewhere.keys), "listed but gone: \(Self.walkedElsewhere.keys)")

        // What the page's prose promises, by name, so that a page that lost its transcripts fails here too.
        func output(_ prefix: String) -> String { ran.last { $0.command.hasPrefix(prefix) }?.output ?? "<not run>" }
        #expect(output("devid crl fetch --name issuing --serial").contains(": listed (keyCompromise"))
        #expect(output("openssl ocsp").contains("device.crt: revoked"))
        #expect(output("openssl ocsp").contains("Reason: keyCompromise"))
        #expect(output("openssl ocsp").contains("Response verify OK"))
        #expect(output("openssl crl -inform DER -in issuing.crl -CAfile") == "verify OK\n")
        #expect(output("openssl verify -crl_check -CAfile").contains("error 23 at 0 depth lookup: certificate revoked"))
        #expect(output("openssl verify -crl_check_all").contains("error 23 at 0 depth lookup: certificate revoked"))
        try DocWalk.dumpIfAsked(ran)
    }
}
