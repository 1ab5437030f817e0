import DevIDCore
@testable import DevIDServer
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// A request that does not keep its connection (HTTP/1.0 without `keep-alive`, `Connection: Close` in any case) is
/// answered with `Connection: close` and the connection closed, on both listeners and on the authz fast path. The
/// idle timeout here is 30 s: a connection closed sooner was closed for the request.
@Suite("Connection: close and HTTP/1.0", .serialized)
struct ConnectionCloseTests {
    /// Sends `request` on a new connection to `port` and reads until the server closes it (or `patience` seconds
    /// pass); the answer and how long the connection stayed open.
    static func exchange(_ request: String, port: Int, patience: Double = 5) async throws -> (
        answer: String, closedAfter: Double?
    ) {
        let script = """
            import json, socket, sys, time
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.sendall(sys.stdin.buffer.read())
            start = time.monotonic()
            s.settimeout(float(sys.argv[2]))
            data, closed = b"", None
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
            let after = try #require(closedAfter, "\(request.debugDescription): still open after 5 s")
            #expect(after < 2, "\(request.debugDescription): closed after \(after) s")
        }
        // HTTP/1.0 that asks to keep the connection, and plain HTTP/1.1, keep it (for the idle timeout).
        for request in [
            "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let (answer, closedAfter) = try await Self.exchange(request, port: port, patience: 1.5)
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            #expect(!Self.headers(answer).contains { $0.lowercased() == "connection: close" }, "\(answer)")
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
        let after = try #require(closedAfter, "still open after 5 s")
        #expect(after < 2, "closed after \(after) s")
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
        #expect(elapsed < .seconds(5), "\(elapsed)")
        #expect(result.stdout.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(result.stdout)")
        #expect(Self.headers(result.stdout).contains { $0.lowercased() == "connection: close" }, "\(result.stdout)")
    }
}
