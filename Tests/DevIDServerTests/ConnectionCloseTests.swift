import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// What `HTTP1ExchangeHandler` adds to Hummingbird. A request that does not keep its connection (HTTP/1.0 without
/// `keep-alive`, `Connection: Close` in any case) is answered with `Connection: close` and the connection closed, on
/// both listeners and on the authz fast path; the idle timeout here is 30 s, so a connection closed sooner was closed
/// for the request. A request with `Expect: 100-continue` gets `100 Continue`, after the answers to the requests
/// pipelined before it.
@Suite("HTTP/1 exchanges: Connection: close, HTTP/1.0, Expect: 100-continue", .serialized)
struct ConnectionCloseTests {
    /// Sends `request` on a new connection to `port`, reads the whole answer (up to 20 s), then waits up to
    /// `patience` seconds for the server to close the connection; the answer and how long after it the connection
    /// closed (nil: still open).
    static func exchange(_ request: String, port: Int, patience: Double = 15) async throws -> (
        answer: String, closedAfter: Double?
    ) {
        let script = """
            import json, re, socket, sys, time
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.sendall(sys.stdin.buffer.read())
            s.settimeout(20)
            data, closed = b"", None
            def complete(data):
                head, sep, body = data.partition(b"\\r\\n\\r\\n")
                match = re.search(rb"(?im)^content-length: *([0-9]+)", head)
                return sep and match and len(body) >= int(match.group(1))
            while not complete(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            start = time.monotonic()
            s.settimeout(float(sys.argv[2]))
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        closed = time.monotonic() - start
                        break
                    data += chunk
            except socket.timeout:
                pass
            print(json.dumps({"answer": data.decode(), "closedAfter": closed}))
            """
        let result = try await ExternalTool.runAsync(
            ["python3", "-c", script, String(port), String(patience)], stdin: Array(request.utf8))
        #expect(result.succeeded, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        return (object["answer"] as? String ?? "", object["closedAfter"] as? Double)
    }

    static func headers(_ answer: String) -> [String] {
        answer.components(separatedBy: "\r\n\r\n").first?.components(separatedBy: "\r\n") ?? []
    }

    @Test("the operations listener closes after answering HTTP/1.0 and Connection: Close, keeps keep-alive open")
    func operationsListener() async throws {
        let f = try await ESTFixture { $0.connectionLimits.idleTimeoutSeconds = 30 }
        defer { Task { try? await f.server.stop() } }
        let port = f.server.opsPort
        for request in [
            "GET /healthz HTTP/1.0\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: TE, close\r\n\r\n",
        ] {
            let (answer, closedAfter) = try await Self.exchange(request, port: port)
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(request.debugDescription): \(answer)")
            #expect(Self.headers(answer).contains { $0.lowercased() == "connection: close" }, "\(answer)")
            let after = try #require(closedAfter, "\(request.debugDescription): still open 15 s after the answer")
            #expect(after < 10, "\(request.debugDescription): closed \(after) s after the answer")
        }
        // HTTP/1.0 that asks to keep the connection, and plain HTTP/1.1, keep it (for the idle timeout); the HTTP/1.0
        // answer says so, or its client would read until the connection closes.
        for (request, header) in [
            ("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "connection: keep-alive"),
            ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", nil),
        ] {
            let (answer, closedAfter) = try await Self.exchange(request, port: port, patience: 1.5)
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            let connection = Self.headers(answer).filter { $0.lowercased().hasPrefix("connection:") }
            #expect(connection.map { $0.lowercased() } == (header.map { [$0] } ?? []), "\(answer)")
            #expect(closedAfter == nil, "\(request.debugDescription): closed after \(closedAfter ?? 0) s")
        }
    }

    @Test("a grant answered by the authz fast path to HTTP/1.0 closes the connection")
    func authzFastPath() async throws {
        let f = try await ESTFixture { $0.connectionLimits.idleTimeoutSeconds = 30 }
        defer { Task { try? await f.server.stop() } }
        _ = try await f.enroll("fp-1")
        let publish = try AuthzFastPathTests.body(
            ["device": "fp-1", "action": "publish", "topic": AuthzFastPathTests.topic])
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: publish).status == 200, "loads the index")
        let answered = f.server.state.authzFastPathAnswered.value
        let request = AuthzFastPathTests.post(publish, token: f.authzToken)
            .replacingOccurrences(of: "HTTP/1.1\r\n", with: "HTTP/1.0\r\n")
        let (answer, closedAfter) = try await Self.exchange(request, port: f.server.opsPort)
        #expect(f.server.state.authzFastPathAnswered.value == answered + 1, "the fast path answered")
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
        #expect(answer.hasSuffix(#""result":"allow"}"#) || answer.contains(#""result":"allow""#), "\(answer)")
        #expect(Self.headers(answer).contains { $0.lowercased() == "connection: close" }, "\(answer)")
        let after = try #require(closedAfter, "still open 15 s after the answer")
        #expect(after < 10, "closed \(after) s after the answer")
    }

    @Test("the EST listener closes after answering an HTTP/1.0 GET over mTLS (openssl s_client -ign_eof)")
    func estListener() async throws {
        let f = try await ESTFixture { $0.connectionLimits.idleTimeoutSeconds = 30 }
        defer { Task { try? await f.server.stop() } }
        let dir = try TemporaryDirectory(prefix: "devid-close")
        defer { dir.remove() }
        let (key, certificate) = try await f.idevid("SN-CLOSE-1")
        let cert = try dir.write("idevid.crt", try certificate.serializeAsPEM().pemString)
        let keyFile = try dir.write("idevid.key", try key.serializeAsPEM().pemString)
        let script = """
            printf 'GET /.well-known/est/cacerts HTTP/1.0\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet \
              -connect 127.0.0.1:\(f.server.estPort) -cert \(cert) -key \(keyFile) -ign_eof 2>/dev/null
            """
        let start = ContinuousClock.now
        let result = try await ExternalTool.runAsync(["bash", "-c", script])
        let elapsed = ContinuousClock.now - start
        #expect(result.status == 0, "timed out: the server kept the connection open \(result.stderr)")
        #expect(elapsed < .seconds(9), "\(elapsed)")
        #expect(result.stdout.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(result.stdout)")
        #expect(Self.headers(result.stdout).contains { $0.lowercased() == "connection: close" }, "\(result.stdout)")
    }

    @Test("Expect: 100-continue is answered with 100 Continue on both listeners: curl sends its body without waiting")
    func expectContinue() async throws {
        let f = try await ESTFixture { $0.connectionLimits.idleTimeoutSeconds = 30 }
        defer { Task { try? await f.server.stop() } }
        let dir = try TemporaryDirectory(prefix: "devid-continue")
        defer { dir.remove() }
        // Without a 100 Continue, curl would wait --expect100-timeout (30 s here) before sending the body.
        let start = ContinuousClock.now
        let created = try await ExternalTool.runAsync([
            "curl", "-sv", "--expect100-timeout", "30", "-H", "Expect: 100-continue", "-H",
            "Authorization: Bearer \(f.server.adminToken)", "-H", "Content-Type: application/json",
            "--data-binary", #"{"tenant":"acme"}"#, f.server.opsURL + "/v1/admin/tokens",
        ])
        #expect(ContinuousClock.now - start < .seconds(20), "curl waited for 100 Continue")
        #expect(created.stderr.contains("< HTTP/1.1 100 Continue"), "\(created.stderr)")
        #expect(created.stderr.contains("< HTTP/1.1 201 Created"), "\(created.stderr)")
        #expect(created.stdout.contains(#""token":"devid_ct_"#), "\(created.stdout)")

        // The EST listener: a claim-token enrollment.
        let token = try await f.token(device: "continue-1")
        let csr = try dir.write(
            "csr.b64", ESTBase64.encode(try ESTFixture.csr(key: try KeyMaterial.generate(.p256))))
        let root = try dir.write("root.pem", try f.hierarchy.root.serializeAsPEM().pemString)
        let enrollStart = ContinuousClock.now
        let enrolled = try await ExternalTool.runAsync([
            "curl", "-sv", "--expect100-timeout", "30", "-H", "Expect: 100-continue", "--cacert", root,
            "-H", "Authorization: Bearer \(token.secret)", "-H", "Content-Type: application/pkcs10",
            "--data-binary", "@\(csr)", f.url("simpleenroll"),
        ])
        #expect(ContinuousClock.now - enrollStart < .seconds(20), "curl waited for 100 Continue")
        #expect(enrolled.stderr.contains("< HTTP/1.1 100 Continue"), "\(enrolled.stderr)")
        #expect(enrolled.stderr.contains("< HTTP/1.1 200 OK"), "\(enrolled.stderr)")
    }

    /// `100 Continue` comes when the body is first read: a request refused before that is answered without it, so
    /// the client never uploads its body (as with Go's net/http and nginx). The device import reads its body only
    /// after the admin token is checked; every other route of the operations listener has it read by the body cap,
    /// which refuses a declared length over the cap without reading.
    @Test("a request refused before its body is read gets its refusal, no 100 Continue, and the body stays unsent")
    func noContinueForARefusal() async throws {
        let f = try await ESTFixture {
            $0.connectionLimits.idleTimeoutSeconds = 30
            $0.connectionLimits.opsMaxBodyBytes = 64 * 1024
        }
        defer { Task { try? await f.server.stop() } }
        let dir = try TemporaryDirectory(prefix: "devid-continue")
        defer { dir.remove() }
        let body = try dir.write("body.json", #"{"tenant":"acme","pad":""# + String(repeating: "x", count: 100_000) + #""}"#)
        for (path, token, status, continued) in [
            ("/v1/admin/devices/import", "devid_admin_wrong", "401 Unauthorized", false),
            ("/v1/admin/tokens", f.server.adminToken, "413 Payload Too Large", false),
            ("/v1/admin/devices/import", f.server.adminToken, "400 Bad Request", true),
        ] {
            let start = ContinuousClock.now
            let reply = try await ExternalTool.runAsync([
                "curl", "-sv", "--expect100-timeout", "30", "-H", "Expect: 100-continue", "-H",
                "Authorization: Bearer \(token)", "-H", "Content-Type: application/json", "--data-binary", "@\(body)",
                f.server.opsURL + path,
            ])
            #expect(ContinuousClock.now - start < .seconds(20), "\(path): curl waited for 100 Continue")
            #expect(reply.stderr.contains("< HTTP/1.1 \(status)"), "\(path): \(reply.stderr)")
            #expect(reply.stderr.contains("< HTTP/1.1 100 Continue") == continued, "\(path): \(reply.stderr)")
        }
    }
}
