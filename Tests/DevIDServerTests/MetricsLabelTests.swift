import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import HTTPTypes
import Prometheus
import Testing
import X509

@testable import DevIDServer

/// Label values of the metrics come from fixed sets: every refusal DevID knows maps onto one, outside input
/// (an HTTP method, a label value with quotes) cannot make a new one or break the format.
@Suite("Metrics labels")
struct MetricsLabelTests {
    @Test(
        "EST and check-in refusal codes map onto the fixed reasons",
        arguments: [
            (RefusalCode.credentialExpired, AuthFailureReason.expired),
            (.credentialNotYetValid, .notYetValid),
            (.credentialRevoked, .revoked), (.deviceRevoked, .revoked), (.idevidRevoked, .revoked),
            (.credentialSuperseded, .superseded), (.successorInUse, .superseded),
            (.credentialUnknown, .unknownIssuer), (.idevidMismatch, .unknownIssuer),
            (.deviceSuspended, .suspended),
            (.deviceUnknown, .unknownDevice), (.idevidNotAllowed, .unknownDevice),
            (.tokenInvalid, .badToken), (.tokenExpired, .badToken), (.tokenUsedUp, .badToken),
            (.authenticationRequired, .badToken),
            (.wrongTenant, .wrongTenant), (.nameNotAllowed, .other),
        ])
    func refusalCodes(code: RefusalCode, reason: AuthFailureReason) {
        #expect(AuthFailureReason(code) == reason)
    }

    @Test(
        "refusals that are not about who the device is are no authentication failure",
        arguments: [
            RefusalCode.badRequest, .rateLimited, .overloaded, .storageFull, .internalError, .conflict, .keyReused,
            .devicePendingApproval,
        ])
    func notAuthFailures(code: RefusalCode) {
        #expect(AuthFailureReason(code) == nil)
    }

    @Test("every authz denial maps onto a fixed reason; a grant is no failure", arguments: AuthzReason.allCases)
    func authzReasons(reason: AuthzReason) {
        let mapped = AuthFailureReason(reason)
        #expect((mapped == nil) == (reason == .ok))
        if reason == .expired { #expect(mapped == .expired) }
        if reason == .topicNotAllowed { #expect(mapped == .topicNotAllowed) }
        if reason == .wrongTenant { #expect(mapped == .wrongTenant) }
    }

    @Test("a refused TLS client certificate: expired, not yet valid, or else an unknown issuer")
    func tlsReasons() throws {
        let clock = ManualWallClock()
        let chain = try TestChain(clock: clock)
        let key = try KeyMaterial.generate(.p256)
        let leaf = try chain.hierarchy.issuing.issueLDevID(
            device: DeviceID(rawValue: "dev-1")!, tenant: TenantID(rawValue: "acme")!,
            trustDomain: chain.hierarchy.trustDomain, publicKey: key.publicKey,
            profile: CertificateProfile(kind: .ldevid, policy: .ldevid), now: clock.now())
        #expect(AuthFailureReason.tls(leaf: leaf, now: leaf.notValidAfter.addingTimeInterval(1)) == .expired)
        #expect(AuthFailureReason.tls(leaf: leaf, now: leaf.notValidBefore.addingTimeInterval(-1)) == .notYetValid)
        #expect(AuthFailureReason.tls(leaf: leaf, now: clock.now()) == .unknownIssuer)
    }

    @Test("an HTTP method outside the known set is counted as other; handles are cached per label set")
    func httpMethods() {
        let metrics = ServerMetrics()
        metrics.http.record(listener: .ops, route: "/metrics", method: .init("BREW")!, status: 405, seconds: 0.001)
        metrics.http.record(listener: .ops, route: "/metrics", method: .init("PROPFIND")!, status: 405, seconds: 0.002)
        metrics.http.record(listener: .est, route: "unmatched", method: .get, status: 404, seconds: 0.003)
        let text = metrics.registry.emitToString()
        #expect(
            text.contains(#"devid_http_requests_total{listener="ops",route="/metrics",method="other",status="405"} 2"#))
        #expect(
            text.contains(#"devid_http_requests_total{listener="est",route="unmatched",method="GET",status="404"} 1"#))
        #expect(!text.contains("BREW") && !text.contains("PROPFIND"))
        #expect(
            text.contains(
                #"devid_http_request_duration_seconds_count{listener="ops",route="/metrics",method="other"} 2"#))
    }

    @Test("label values escape backslash, quote and line feed; numbers print without a needless fraction")
    func textFormat() {
        var text = PrometheusText()
        text.family("x_total", type: "counter", help: "A test.")
        text.sample("x_total", [("tenant", "a\"b\\c\nd")], 3)
        text.sample("x_total", [("tenant", "e")], 0.5)
        #expect(
            String(decoding: text.bytes, as: UTF8.self)
                == "# HELP x_total A test.\n# TYPE x_total counter\nx_total{tenant=\"a\\\"b\\\\c\\nd\"} 3\nx_total{tenant=\"e\"} 0.5\n"
        )
        #expect(PrometheusText.number(1_796_054_400) == "1796054400")
        #expect(PrometheusText.number(.infinity) == "+Inf")
    }

    @Test("enrollments and revocations of no credential count nothing; onboarding never goes negative")
    func events() {
        let metrics = ServerMetrics()
        metrics.revoked(scope: .device, reason: .keyCompromise, credentials: 0)
        metrics.onboarded(tenant: TenantID(rawValue: "acme")!, seconds: -5)
        metrics.enrollment(tenant: nil, kind: .lateRenewal, result: .refused)
        let text = metrics.registry.emitToString()
        #expect(!text.contains("devid_revocations_total{"))
        #expect(text.contains(#"devid_onboarding_seconds_sum{tenant="acme"} 0.0"#))
        #expect(text.contains(#"devid_enrollments_total{tenant="unknown",kind="late_renewal",result="refused"} 1"#))
    }

    @Test("process metrics: CPU time, memory and start time from /proc/self/stat and btime of /proc/stat")
    func processStat() throws {
        // A command name with spaces and parentheses: fields are counted after the last ')'.
        let stat =
            "17627 (a) b) R 17583 17583 27733 0 -1 4194304 130 0 0 0 250 50 0 0 20 0 1 0 2182827 3133440 380 "
            + "18446744073709551615 0 0"
        let sample = try #require(
            ProcessMetrics.parse(
                stat: stat, systemStat: "cpu  1 2 3\nbtime 1796504995\nprocesses 9\n", ticksPerSecond: 100,
                pageSize: 4096))
        #expect(sample.cpuSeconds == 3)
        #expect(sample.startTimeSeconds == 1_796_504_995 + 21_828.27)
        #expect(sample.virtualBytes == 3_133_440)
        #expect(sample.residentBytes == 380 * 4096)
        #expect(ProcessMetrics.parse(stat: "garbage", systemStat: "", ticksPerSecond: 100, pageSize: 4096) == nil)
        #expect(ProcessMetrics.parse(stat: stat, systemStat: "no btime\n", ticksPerSecond: 100, pageSize: 4096) == nil)
    }
}
