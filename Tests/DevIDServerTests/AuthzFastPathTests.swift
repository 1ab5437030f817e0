import DevIDCore
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// `POST /v1/authz/mqtt` grants answered on the event loop (``AuthzFastPathHandler``): the same answer as the router,
/// byte for byte; everything that is not a held publish or subscribe grant still reaches the router; answers stay in
/// request order on a pipelined connection; `Connection: close` still closes.
@Suite("Authz fast path", .serialized)
struct AuthzFastPathTests {
    static let topic = "tenants/acme/devices/fp-1/telemetry/temp"

    static func body(_ fields: [String: String]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Sends `requests` (raw HTTP/1.1) in ONE write on one connection and reads until the server closes it.
    static func pipelined(_ requests: [String], port: Int) async throws -> String {
        let script = """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.sendall(sys.stdin.buffer.read())
            s.settimeout(20)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            sys.stdout.write(data.decode())
            """
        let result = try await ExternalTool.runAsync(
            ["python3", "-c", script, String(port)], stdin: Array(requests.joined().utf8))
        #expect(result.succeeded, "\(result.stderr)")
        return result.stdout
    }

    /// `devid_http_requests_total` of `POST /v1/authz/mqtt` answered 200, from `GET /metrics`.
    static func grantsCounted(_ f: ESTFixture) async throws -> Int {
        let scrape = try await f.admin("GET", "/metrics")
        #expect(scrape.status == 200)
        let line = scrape.body.split(separator: "\n").first {
            $0.hasPrefix("devid_http_requests_total{") && $0.contains(#"route="/v1/authz/mqtt""#)
                && $0.contains(#"method="POST""#) && $0.contains(#"status="200""#)
        }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }

    static func post(_ body: String, token: String, close: Bool = false) -> String {
        "POST /v1/authz/mqtt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + (close ? "Connection: close\r\n" : "") + "\r\n" + body
    }

    @Test("a held publish grant is answered before the router, with the router's bytes and headers")
    func grantMatchesRouter() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("fp-1")
        let answered = f.server.state.authzFastPathAnswered
        let publish = try Self.body(["device": "fp-1", "action": "publish", "topic": Self.topic])
        // The first decision loads the device into the index (the router's work).
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: publish).status == 200)
        let before = answered.value

        let requestsBefore = try await Self.grantsCounted(f)
        let fast = try await f.authz("POST", "/v1/authz/mqtt", body: publish)
        #expect(answered.value == before + 1, "answered before the router")
        // Counted in GET /metrics as the router's answers are.
        #expect(try await Self.grantsCounted(f) == requestsBefore + 1)
        // With an admin token the same question goes to the router.
        let routed = try await f.authz("POST", "/v1/authz/mqtt", body: publish, token: f.server.adminToken)
        #expect(answered.value == before + 1, "an admin token is the router's")
        #expect(fast.status == 200 && routed.status == 200)
        #expect(fast.body == routed.body)
        #expect(fast.body.hasPrefix(#"{"device":"fp-1","reason":"ok","result":"allow","serial":""#), "\(fast.body)")
        for name in ["Content-Type", "Content-Length", "Server"] {
            #expect(fast.header(name) == routed.header(name), "\(name)")
        }
        #expect(fast.header("Date").map { IMFFixdateCheck.isValid($0) } == true, "\(fast.headers)")

        // Subscribe and by fingerprint (colons, upper case) too; counted like the router counts.
        let identity = try await f.enroll("fp-2")
        let fingerprint = ESTFixture.colonFingerprint(identity.certificate)
        let byPrint = try Self.body([
            "fingerprint": fingerprint, "action": "subscribe", "topic": "tenants/acme/devices/fp-2/commands/#",
        ])
        // The first decision by this certificate confirms it (a registry write): the router's.
        let first = answered.value
        #expect(try await f.decide(["fingerprint": fingerprint, "action": "subscribe",
            "topic": "tenants/acme/devices/fp-2/commands/#"]) == ("allow", "ok"))
        #expect(answered.value == first, "the confirming decision is the router's")
        let countBefore = f.server.state.authz.counters.count(action: "subscribe", allowed: true)
        let subscribe = try await f.authz("POST", "/v1/authz/mqtt", body: byPrint)
        #expect(subscribe.body.contains(#""result":"allow""#), "\(subscribe.body)")
        #expect(answered.value == first + 1)
        #expect(f.server.state.authz.counters.count(action: "subscribe", allowed: true) == countBefore + 1)
        #expect(try await f.store.auditEvents(AuditFilter(action: "authz.subscribe", outcome: .success)).isEmpty)
        try await f.server.stop()
    }

    @Test("denials, connects, misses, odd bodies and bad tokens go to the router and get its answers")
    func everythingElseIsRouted() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("fp-1")
        let answered = f.server.state.authzFastPathAnswered
        #expect(try await f.decide(["device": "fp-1", "action": "connect"]) == ("allow", "ok"))
        let before = answered.value

        // An audited denial (and its audit row).
        #expect(
            try await f.decide(["device": "fp-1", "action": "publish", "topic": "tenants/acme/devices/fp-9/x"])
                == ("deny", "topic_not_allowed"))
        #expect(
            try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied)).count == 1)
        // A connect grant is audited: the router's.
        #expect(try await f.decide(["device": "fp-1", "action": "connect"]) == ("allow", "ok"))
        // An unknown device (an index miss).
        #expect(
            try await f.decide(["device": "nobody", "action": "publish", "topic": "tenants/acme/devices/nobody/x"])
                == ("deny", "unknown_device"))
        // A body the fast reader steps aside for (a \u escape), and one over 4 KiB: still granted, by the router.
        let escaped = #"{"action":"publish","device":"fp\u002d1","topic":"tenants/acme/devices/fp-1/telemetry/t"}"#
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: escaped).body.contains(#""result":"allow""#))
        let padded = String(repeating: " ", count: 5000)
            + (try Self.body(["device": "fp-1", "action": "publish", "topic": Self.topic]))
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: padded).body.contains(#""result":"allow""#))
        // Malformed fields: the router's 400s.
        let badPrint = try await f.authz(
            "POST", "/v1/authz/mqtt", body: try Self.body(["fingerprint": "zz", "action": "publish", "topic": "t"]))
        #expect(badPrint.status == 400)
        #expect(errorMessage(badPrint)?.contains("fingerprint must be") == true)
        let both = try await f.authz(
            "POST", "/v1/authz/mqtt",
            body: try Self.body(["device": "fp-1", "fingerprint": "ab", "action": "publish", "topic": Self.topic]))
        #expect(both.status == 400)
        #expect(
            try await f.authz("POST", "/v1/authz/mqtt", body: try Self.body(["device": "fp-1", "action": "publish"]))
                .status == 400)
        // A wrong token or none: 401 from the router (and audited there in aggregate).
        let publish = try Self.body(["device": "fp-1", "action": "publish", "topic": Self.topic])
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: publish, token: "devid_authz_WRONG").status == 401)
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: publish, token: "").status == 401)
        // A query string is another URL: the router's.
        #expect(try await f.authz("POST", "/v1/authz/mqtt?x=1", body: publish).status == 200)
        #expect(answered.value == before, "none of these was answered before the router")

        // The grant itself still is; and a revocation changes the very next answer.
        #expect(try await f.decide(["device": "fp-1", "action": "publish", "topic": Self.topic]) == ("allow", "ok"))
        #expect(answered.value == before + 1)
        #expect(
            try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"fp-1","reason":"keyCompromise"}"#)
                .status == 200)
        #expect(try await f.decide(["device": "fp-1", "action": "publish", "topic": Self.topic]) == ("deny", "revoked"))
        #expect(answered.value == before + 1)
        try await f.server.stop()
    }

    @Test("pipelined requests are answered in request order, and Connection: close closes after a fast answer")
    func pipeliningAndClose() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("fp-1")
        let token = f.authzToken.trimmingCharacters(in: .whitespacesAndNewlines)
        let grant = try Self.body(["device": "fp-1", "action": "publish", "topic": Self.topic])
        let denial = try Self.body(["device": "fp-1", "action": "publish", "topic": "tenants/acme/devices/fp-9/x"])
        #expect(try await f.decide(["device": "fp-1", "action": "connect"]) == ("allow", "ok"))
        let answered = f.server.state.authzFastPathAnswered

        // A denial (audited: a registry write, slow) then grants, all in one write: the grants must not overtake it.
        let output = try await Self.pipelined(
            [
                Self.post(denial, token: token), Self.post(grant, token: token), Self.post(grant, token: token),
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Self.post(grant, token: token, close: true),
            ], port: f.server.opsPort)
        let statuses = output.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "200", "200", "200", "200"], "\(output)")
        let reasons = output.components(separatedBy: "\"reason\":\"").dropFirst().map { $0.prefix { $0 != "\"" } }
        #expect(reasons == ["topic_not_allowed", "ok", "ok", "ok"], "\(output)")
        // (The grants arrived while the denial was in flight, so the router answered them; how many depends on how
        // the bytes were split into reads.)
        let afterBatch = answered.value

        // A fast answer with Connection: close: answered, then the server ends the connection (the script reads until
        // EOF, and fails on its 20 s timeout if the connection stays open).
        let closing = try await Self.pipelined([Self.post(grant, token: token, close: true)], port: f.server.opsPort)
        #expect(closing.hasPrefix("HTTP/1.1 200"), "\(closing)")
        #expect(closing.contains(#""reason":"ok""#), "\(closing)")
        #expect(answered.value == afterBatch + 1)
        try await f.server.stop()
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
enum IMFFixdateCheck {
    static func isValid(_ text: String) -> Bool {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text) != nil
    }
}
