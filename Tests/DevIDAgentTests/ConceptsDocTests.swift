import DevIDTesting
import Foundation
import Testing

/// docs/concepts.md as executable documentation: its one command (the server certificate as openssl prints it)
/// runs against the data directory of a real first start, and the output it shows is compared by shape (see
/// [ReadmeTests]). Its other blocks are diagrams (```` ```mermaid ````) and the CA hierarchy, whose files are
/// checked against what the first start wrote.
@Suite("docs/concepts.md", .serialized)
struct ConceptsDocTests {
    @Test("docs/concepts.md: the server certificate as shown", .timeLimit(.minutes(2)))
    func serverCertificate() async throws {
        let page = try DocFile("docs/concepts.md")
        let work = try TemporaryDirectory(prefix: "devid-concepts-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        try await walk.run("alias devid=devid")
        try await walk.run("devid serve > serve.log 2>&1 &", expectServerStart: true)

        var ran: [DocWalk.Result] = []
        var hierarchy = false
        for block in page.blocks {
            let first = block.lines.first ?? ""
            if block.info == "mermaid" { continue }
            if block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                ran += try await walk.run(block)
            } else if first.hasPrefix("DevID Root CA ") {
                hierarchy = true
                // The files the hierarchy names are those a first start writes.
                for file in ["ca/root.crt", "ca/issuing.crt", "ca/manufacturer.crt", "tls/server.crt"] {
                    #expect(block.lines.contains { $0.contains(file) }, "the hierarchy names \(file)")
                    #expect(
                        FileManager.default.fileExists(atPath: work.file("devid-data/\(file)")),
                        "a first start writes \(file)")
                }
            } else {
                Issue.record("docs/concepts.md:\(block.line): a block that is neither run nor listed: \(first)")
            }
        }
        #expect(hierarchy, "the CA hierarchy block is on the page")
        #expect(ran.map(\.command) == ["openssl x509 -in devid-data/tls/server.crt -noout -text"])
    }
}
