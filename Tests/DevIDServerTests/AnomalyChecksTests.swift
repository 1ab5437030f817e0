import DevIDCore
import DevIDPKI
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

@testable import DevIDServer

/// The anomaly checks as pure functions of their inputs: thresholds at their edges, severities, the bounds.
@Suite("Anomaly checks")
struct AnomalyChecksTests {
    static let now = Date(timeIntervalSince1970: 1_790_000_000)
    static let day: TimeInterval = 86_400

    static func inputs(_ configure: (inout HealthInputs) -> Void) -> HealthInputs {
        var inputs = HealthInputs(now: now, thresholds: HealthThresholds())
        configure(&inputs)
        return inputs
    }

    @Test("CA expiry: warning under 90 days, critical under 30 or expired")
    func caExpiring() {
        let findings = AnomalyChecks.run(
            "ca_expiring",
            Self.inputs {
                $0.cas = [
                    ("root", Self.now.addingTimeInterval(3_650 * Self.day)),
                    ("issuing", Self.now.addingTimeInterval(89 * Self.day)),
                    ("services", Self.now.addingTimeInterval(29 * Self.day)),
                    ("manufacturer", Self.now.addingTimeInterval(-Self.day)),
                ]
            })
        #expect(findings.map(\.severity) == [.warning, .critical, .critical])
        #expect(findings.map(\.summary)[0].hasPrefix("CA issuing expires on"))
        #expect(findings.map(\.summary)[2].hasPrefix("CA manufacturer expired on"))
    }

    @Test("CRL: a warning in the last quarter of its validity, critical past nextUpdate")
    func crlStale() {
        let findings = AnomalyChecks.run(
            "crl_stale",
            Self.inputs {
                $0.crls = [
                    ("issuing", Self.now.addingTimeInterval(-12 * 3_600), Self.now.addingTimeInterval(12 * 3_600)),
                    ("manufacturer", Self.now.addingTimeInterval(-20 * 3_600), Self.now.addingTimeInterval(4 * 3_600)),
                    ("services", Self.now.addingTimeInterval(-25 * 3_600), Self.now.addingTimeInterval(-3_600)),
                ]
            })
        #expect(findings.map(\.severity) == [.warning, .critical])
        #expect(findings[0].summary.hasPrefix("CRL manufacturer reaches its nextUpdate"))
        #expect(findings[1].summary.hasPrefix("CRL services is past its nextUpdate"))
    }

    @Test("OCSP signer: a warning under 12 hours, critical once expired")
    func ocspSigner() {
        let findings = AnomalyChecks.run(
            "ocsp_signer_expiring",
            Self.inputs {
                $0.ocspSigners = [
                    ("issuing", Self.now.addingTimeInterval(13 * 3_600)),
                    ("manufacturer", Self.now.addingTimeInterval(3_600)), ("services", Self.now.addingTimeInterval(-1)),
                ]
            })
        #expect(findings.map(\.severity) == [.warning, .critical])
    }

    @Test("refusal spike: at least the minimum and the factor times the day's hourly average")
    func refusalSpike() {
        func run(_ last: Int, _ before: Int) -> [Anomaly] {
            AnomalyChecks.run(
                "enrollment_refusal_spike",
                Self.inputs {
                    $0.refusalsLastHour = last
                    $0.refusalsDayBefore = before
                })
        }
        #expect(run(19, 0).isEmpty, "under the minimum of 20")
        #expect(run(20, 0).count == 1)
        #expect(run(30, 241).isEmpty, "30 < 3 x 10.04 per hour")
        #expect(run(30, 240).count == 1, "30 = 3 x 10 per hour")
    }

    @Test("expiry wave: the busiest 7 days over the share, for tenants at the minimum size; critical inside a week")
    func expiryWave() {
        let acme = TenantID(rawValue: "acme")!
        let beta = TenantID(rawValue: "beta")!
        var days = Array(repeating: 0, count: 60)
        days[40] = 5
        days[46] = 5  // 10 of 40 in days 40-46: exactly 25 %, not over it
        days[10] = 30
        let findings = AnomalyChecks.run(
            "expiry_wave",
            Self.inputs {
                $0.expiryByDay = [acme: days, beta: [9] + Array(repeating: 0, count: 59)]
                $0.currentCredentials = [acme: 40, beta: 9]
            })
        #expect(findings.count == 1, "beta has 9 credentials, under the minimum of 10")
        #expect(findings.first?.severity == .warning)
        #expect(findings.first?.summary.hasPrefix("tenant acme: 30 of 40 credentials (75 %) expire in the 7 days from") == true)
        var soon = days
        soon[10] = 0
        soon[3] = 30
        let critical = AnomalyChecks.run(
            "expiry_wave",
            Self.inputs {
                $0.expiryByDay = [acme: soon]
                $0.currentCredentials = [acme: 40]
            })
        #expect(critical.map(\.severity) == [.critical])
    }

    @Test("expiry wave: the threshold is at least twice what an even spread puts in a week of the LDevID lifetime")
    func expiryWaveScalesWithLifetime() {
        let acme = TenantID(rawValue: "acme")!
        #expect(HealthThresholds().expiryWavePercent(lifetime: nil) == 25)
        #expect(HealthThresholds().expiryWavePercent(lifetime: 365 * 86_400) == 25, "a year: 25 % stays")
        #expect(abs(HealthThresholds().expiryWavePercent(lifetime: 30 * 86_400) - 46.67) < 0.01, "30 days: 2 x 7/30")
        #expect(HealthThresholds().expiryWavePercent(lifetime: 7 * 86_400) == 100, "a week: every credential, always")
        // 40 credentials of a 30-day lifetime, renewed about evenly: 14 (35 %) in the busiest week.
        var even = Array(repeating: 0, count: 30)
        for day in 0..<30 { even[day] = day < 10 ? 2 : 1 }
        let inputs = { (lifetime: TimeInterval?, days: [Int]) in
            Self.inputs {
                $0.expiryByDay = [acme: days]
                $0.currentCredentials = [acme: days.reduce(0, +)]
                $0.ldevidLifetime = lifetime
            }
        }
        #expect(even.reduce(0, +) == 40 && even[0..<7].reduce(0, +) == 14)
        #expect(AnomalyChecks.run("expiry_wave", inputs(30 * 86_400, even)).isEmpty, "35 % in a week of 30 days: no wave")
        #expect(AnomalyChecks.run("expiry_wave", inputs(nil, even)).count == 1, "without the lifetime, 35 % > 25 %")
        // A fleet enrolled on one day: all of it in one week is a wave whatever the lifetime.
        var migrated = Array(repeating: 0, count: 30)
        migrated[20] = 40
        #expect(AnomalyChecks.run("expiry_wave", inputs(30 * 86_400, migrated)).count == 1)
    }

    @Test("findings per check are capped; unknown checks find nothing")
    func bounded() {
        var snapshot = IdentityWatch.Snapshot()
        snapshot.tokens = (0..<150).map {
            .init(token: "t\($0)", tenant: nil, reason: "used up", attempts: 1, firstSeen: Self.now, lastSeen: Self.now)
        }
        #expect(AnomalyChecks.run("bulk_token_overused", Self.inputs { $0.events = snapshot }).count == 100)
        #expect(AnomalyChecks.run("nope", Self.inputs { _ in }).isEmpty)
    }

    @Test("the watch keeps at most 1,000 subjects per kind, dropping the least recently seen")
    func watchBounded() {
        let watch = IdentityWatch()
        for index in 0..<1_005 {
            watch.suspect(
                device: DeviceID(rawValue: "dev-\(index)")!, tenant: nil, serial: nil, stage: "est",
                reason: "revoked", source: "192.0.2.1", at: Self.now.addingTimeInterval(Double(index)))
        }
        let suspects = watch.snapshot(since: .distantPast).suspects
        #expect(suspects.count == 1_000)
        #expect(!suspects.contains { $0.device.rawValue == "dev-4" })
        #expect(suspects.contains { $0.device.rawValue == "dev-5" })
    }

    @Test("weak keys: a SHA-1 signature made by openssl is weak; an RSA-1024 key does not even parse; P-256 is fine")
    func weakKey() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-weak-key")
        defer { directory.remove() }
        func make(_ name: String, _ arguments: [String]) async throws -> String {
            let made = try await ExternalTool.runAsync(
                ["openssl", "req", "-x509", "-nodes", "-keyout", directory.file("\(name).key"), "-out",
                 directory.file("\(name).pem"), "-subj", "/CN=\(name)", "-days", "30"] + arguments)
            try #require(made.succeeded, "\(made.stderr)")
            return try String(contentsOfFile: directory.file("\(name).pem"), encoding: .utf8)
        }
        let sha1 = try Certificate(pemEncoded: try await make("sha1", ["-newkey", "rsa:2048", "-sha1"]))
        #expect(KeyStrength.weakness(of: sha1) == "signed with SHA-1")
        let sha256 = try Certificate(pemEncoded: try await make("sha256", ["-newkey", "rsa:2048", "-sha256"]))
        #expect(KeyStrength.weakness(of: sha256) == nil)
        // swift-certificates refuses RSA keys under 2048 bits outright: such an IDevID fails the TLS handshake
        // ("client certificate does not parse") before any check could see it.
        let short = try await make("short", ["-newkey", "rsa:1024", "-sha256"])
        #expect(throws: (any Error).self) { try Certificate(pemEncoded: short) }
        let chain = try TestChain()
        defer { chain.directory.remove() }
        let (_, strong) = try chain.idevid()
        #expect(KeyStrength.weakness(of: strong) == nil)
    }
}
