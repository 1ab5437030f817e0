@testable import DevIDAgent
import DevIDCore
import DevIDTesting
import DevIDPKI
import Foundation
import SwiftASN1
import Testing
import X509

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Shared by the fault tests (issue #13 part 5, `KillNineTests`, `DiskFullTests`, `TLSScanTests`): the admin API over
/// plain HTTP, claim-token enrollments over EST with real TLS from this process, and `sqlite3` on a stopped registry.
enum FaultHarness {
    /// Back-pressure off for a burst from one loopback address (the limits are tested elsewhere): per source, per
    /// tenant and global buckets disabled; the cap on enrollments in flight stays (64, above the test's concurrency).
    static let unlimited: [String: String] = [
        "DEVID_LIMITS_SOURCE_PER_SECOND": "0", "DEVID_LIMITS_TENANT_PER_SECOND": "0",
        "DEVID_LIMITS_GLOBAL_PER_SECOND": "0",
    ]

    struct Token: Sendable {
        var id: String
        var secret: String
        var device: String
    }

    static func adminToken(_ dataDir: String) throws -> String {
        try String(contentsOfFile: "\(dataDir)/secrets/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `method path` on the ops listener with the admin token; status and body.
    static func admin(
        _ method: String, _ opsURL: String, _ path: String, token: String, json: [String: Any]? = nil,
        timeout: TimeInterval = 30
    ) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: URL(string: opsURL + path)!, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    /// Single-use claim tokens, each bound to its own device `prefix-NNNNN`, made through the admin API.
    static func makeTokens(
        count: Int, tenant: String, prefix: String, opsURL: String, adminToken: String, concurrency: Int = 8
    ) async throws -> [Token] {
        try await withThrowingTaskGroup(of: (Int, Token).self) { group in
            var tokens = [Token?](repeating: nil, count: count)
            var next = 0
            func add() {
                let index = next
                next += 1
                group.addTask {
                    let device = String(format: "\(prefix)-%05d", index)
                    let (status, body) = try await admin(
                        "POST", opsURL, "/v1/admin/tokens", token: adminToken,
                        json: ["tenant": tenant, "device": device, "uses": 1, "ttlSeconds": 86_400])
                    guard status == 201 || status == 200,
                        let object = try JSONSerialization.jsonObject(with: body) as? [String: Any],
                        let id = object["id"] as? String, let secret = object["token"] as? String
                    else {
                        throw ServeError("token create for \(device): HTTP \(status) \(String(decoding: body, as: UTF8.self))")
                    }
                    return (index, Token(id: id, secret: secret, device: device))
                }
            }
            for _ in 0..<min(concurrency, count) { add() }
            while let (index, token) = try await group.next() {
                tokens[index] = token
                if next < count { add() }
            }
            return tokens.compactMap { $0 }
        }
    }

    /// A new P-256 key and a CSR naming `device`, as the agent makes them.
    static func csr(device: String) throws -> [UInt8] {
        let key = try Enroller.newKey().key
        return try Enroller.csr(deviceID: DeviceID(rawValue: device), key: key)
    }

    /// One `simpleenroll` with HTTP Basic (device id, claim token) over a fresh TLS connection that trusts `root`.
    static func enroll(estURL: String, root: Certificate, token: Token, csr: [UInt8], timeout: Duration = .seconds(60))
        async throws -> Certificate
    {
        let client = try ESTClient(
            baseURL: estURL, trustRoots: [root], connectTimeout: .seconds(10), requestTimeout: timeout)
        return try await client.simpleEnroll(
            csrDER: csr, authorization: .basic(user: token.device, password: token.secret))
    }

    static func root(_ dataDir: String) throws -> Certificate {
        let pem = try String(contentsOfFile: "\(dataDir)/ca/root.crt", encoding: .utf8)
        return try Certificate(pemEncoded: pem)
    }

    /// `sqlite3 -separator ' ' DB SQL`, one row per line; `via` runs it through another command (`nsenter ...`).
    static func query(_ database: String, _ sql: String, via: [String] = []) throws -> [[String]] {
        let command = via + ["sqlite3", "-separator", " ", database, sql]
        return try AuditTamperTests.run(command[0], Array(command.dropFirst()))
            .split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
    }

    /// The serial as the registry stores it (`Certificate.devidSerial`).
    static func serial(_ certificate: Certificate) -> String {
        certificate.devidSerial.rawValue
    }
}

/// SplitMix64: a seeded generator, so a failing fault schedule can be replayed (`DEVID_FAULT_SEED`).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
