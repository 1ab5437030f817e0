import DevIDTesting
import Foundation
import Testing

/// `devid policy set` refuses a rule that would inject a line into a broker file before anything is sent (issue
/// #12, finding 4); the server refuses it too (`TenantBoundaryTests`).
@Suite("devid policy set")
struct PolicyCLITests {
    @Test("a rule with a newline is refused by the CLI, naming the file and the rule; nothing is sent")
    func injectedRuleRefused() async throws {
        let work = try TemporaryDirectory(prefix: "devid-policy-cli")
        defer { work.remove() }
        let file = try work.write(
            "policy.json",
            #"{"rules":[{"action":"subscribe","topic":"tenants/{tenant}/broadcast"},"#
                + #"{"action":"publish","topic":"tenants/{tenant}/x\ntopic readwrite tenants/+/#"}]}"#)
        // Port 9 (discard) on loopback: nothing listens, so reaching the server would fail differently.
        let result = try await ServeCLITests.devid(
            ["policy", "set", "--tenant", "acme", "--file", file, "--server", "http://127.0.0.1:9"], in: work.path)
        #expect(result.status != 0, "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
        #expect(result.stderr == "Error: \(file): rule 2: control character U+000A not allowed\n", "\(result)")
    }
}
