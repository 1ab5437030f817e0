import DevIDTesting
import Foundation
import Testing

/// docs/policy.md as executable documentation: every command it tells the reader to run, in order, against a real
/// `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo once device L1-000001 has enrolled, so the walk first runs
/// that part of the README. Every other block of the page is a format (```` ```json ````, ```` ```ini ````) or one
/// of the [illustrations] (what a broker sends, which the broker tests exercise); a block that is none of these
/// fails the test, so a new command cannot slip into the page unrun.
@Suite("docs/policy.md", .serialized)
struct PolicyDocTests {
    static let page = "docs/policy.md"

    /// Blocks that show a request or configuration but no command to run, by their first line, and where it is tested.
    static let illustrations: [String: String] = [
        "POST /v1/authz/rabbitmq/<token>/topic": "a request RabbitMQ sends: BrokerAuthzTests and RabbitMQE2ETests",
        "# EMQX HTTP authenticator: method post, url http://127.0.0.1:8080/v1/authz/emqx/authn,":
            "EMQX's authenticator configuration: BrokerAuthzTests",
        #"{"clientid": "${clientid}", "username": "${username}", "action": "${action}", "topic": "${topic}"}"#:
            "EMQX's authorizer body template: BrokerAuthzTests",
    ]

    @Test("docs/policy.md, every command in order", .timeLimit(.minutes(3)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-policy-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }

        // The README up to device L1-000001's enrollment into dev1.
        try await walk.runReadmeThroughFirstEnrollment()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var ran: [DocWalk.Result] = []
        var seenIllustrations: Set<String> = []
        for block in page.blocks {
            let first = block.lines.first ?? ""
            if block.info == "sh" || block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                ran += try await walk.run(block)
            } else if ["json", "ini"].contains(block.info) {
                continue
            } else if Self.illustrations[first] != nil {
                seenIllustrations.insert(first)
            } else {
                Issue.record("docs/policy.md:\(block.line): a block that is neither run nor listed: \(first)")
            }
        }
        #expect(seenIllustrations == Set(Self.illustrations.keys), "an illustration left the page")
        #expect(
            ran.map { String($0.command.split(separator: " ").first ?? "") } == [
                "devid", "echo", "devid", "devid", "OPS=http://127.0.0.1:8080", "AUTHZ=$(cat", "curl", "curl", "jq",
            ], "the page lost or gained commands: \(ran.map(\.command))")
    }
}
