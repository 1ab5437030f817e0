import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// `devid token list` past one page of `GET /v1/admin/tokens` (1000 tokens): a claim token per device and per
/// re-provisioning adds up, and expired ones stay listed.
@Suite("devid token list across pages")
struct TokenListCLITests {
    @Test("devid token list prints every token, newest first, across pages; --limit N the newest N")
    func pages() async throws {
        try await withServer { server in
            // 1,200 tokens a second apart (1,200 is past one page), straight into the registry: the CLI lists them.
            let start = server.clock.now()
            var ids: [String] = []
            for index in 0..<1_200 {
                let generated = ClaimTokens.generate()
                try await server.store.insertClaimToken(
                    ClaimToken(
                        id: generated.id, secretHash: generated.hash, tenant: server.tenant, device: nil,
                        expiresAt: start.addingTimeInterval(86_400), usesRemaining: 1,
                        createdAt: start.addingTimeInterval(TimeInterval(index))),
                    audit: nil)
                ids.append(generated.id)
            }
            let newestFirst = Array(ids.reversed())
            let executable = try AgentCLITests.executable()
            let environment = ["DEVID_ADMIN_TOKEN": server.adminToken]

            let all = try await ExternalTool.runAsync(
                [executable, "token", "list", "--server", server.opsURL], environment: environment)
            #expect(all.status == 0, "\(all.stderr)")
            let rows = all.stdout.split(separator: "\n")
            #expect(rows.first?.hasPrefix("ID ") == true)
            #expect(rows.dropFirst().map { String($0.prefix(while: { $0 != " " })) } == newestFirst, "\(rows.count) rows")

            let some = try await ExternalTool.runAsync(
                [executable, "token", "list", "--limit", "1100", "--json", "--server", server.opsURL],
                environment: environment)
            let listed = try #require(try JSONSerialization.jsonObject(with: Data(some.stdout.utf8)) as? [[String: Any]])
            #expect(listed.compactMap { $0["id"] as? String } == Array(newestFirst.prefix(1_100)))
            #expect(!some.stdout.contains("devid_ct_"), "never a secret")

            let refused = try await ExternalTool.runAsync(
                [executable, "token", "list", "--limit", "0", "--server", server.opsURL], environment: environment)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("--limit must be 1 or more"), "\(refused.stderr)")
        }
    }
}
