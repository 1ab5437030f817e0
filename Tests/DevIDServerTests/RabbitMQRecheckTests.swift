import DevIDCore
import DevIDServer
import DevIDTesting
import Foundation
import Logging
import Testing

/// ``RabbitMQSessions``' second looks, against a stand-in for the management API (a Python HTTP server serving
/// `GET /api/connections` from a file the test writes, and recording each `DELETE`). The real node is exercised by
/// RabbitMQDocTests and RabbitMQE2ETests; this checks the schedule and which devices a late look may close.
@Suite struct RabbitMQRecheckTests {
    static let server = """
        import http.server, json, os, sys, urllib.parse
        directory = sys.argv[2]
        connections = os.path.join(directory, "connections.json")
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = open(connections, "rb").read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def do_DELETE(self):
                name = urllib.parse.unquote(self.path.rsplit("/", 1)[1])
                with open(os.path.join(directory, "deleted"), "a") as log:
                    log.write(name + "\\n")
                kept = [c for c in json.load(open(connections)) if c["name"] != name]
                json.dump(kept, open(connections, "w"))
                self.send_response(204)
                self.end_headers()
            def log_message(self, *arguments):
                pass
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
        """

    @Test("second looks come 6 and 12 s after the revocation and close only devices that still may not connect")
    func secondLooks() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-rabbitmq-rechecks")
        defer { directory.remove() }
        let connections = directory.file("connections.json")
        func list(_ users: [String]) throws {
            let items = users.map { #"{"name": "127.0.0.1:5000 -> 127.0.0.1:8883 (\#($0))", "user": "\#($0)"}"# }
            try ("[" + items.joined(separator: ", ") + "]").write(toFile: connections, atomically: true, encoding: .utf8)
        }
        func deleted() -> [String] {
            ((try? String(contentsOfFile: directory.file("deleted"), encoding: .utf8)) ?? "")
                .split(separator: "\n").map { String($0.split(separator: "(").last?.dropLast() ?? "") }
        }
        try list([])
        let port = try LoopbackPort.free()
        let script = try directory.write("management.py", Self.server)
        let api = try BackgroundProcess(
            ["python3", script, String(port), directory.path], logPath: directory.file("management.log"))
        defer { Task { await api.stop() } }
        try await Loopback.waitUntilAccepting(port, timeout: 10, process: api)

        let (a, b) = (DeviceID(rawValue: "dev-a")!, DeviceID(rawValue: "dev-b")!)
        // dev-b is resumed before the second looks: it may connect again, its new connection stays.
        let sessions = RabbitMQSessions(
            management: RabbitMQManagement(url: "http://127.0.0.1:\(port)", user: "u", password: "p"),
            logger: Logger(label: "test"), stillEnded: { $0.subtracting([b]) })

        // Revoked while their connections are not listed yet (the node's statistics come every 5 s).
        #expect(await sessions.endSessions(devices: [a, b], reason: "test") == 0)
        #expect(await sessions.rechecksDue == 2)
        try list(["dev-a", "dev-b", "dev-c"])
        await sessions.advance(by: .seconds(5))
        #expect(deleted().isEmpty, "nothing is due 5 s after the revocation")
        await sessions.advance(by: .seconds(1))
        #expect(deleted() == ["dev-a"], "6 s: dev-a's connection closed; dev-b resumed, dev-c never revoked")
        #expect(await sessions.rechecksDue == 1)
        // The second look comes 12 s after the revocation, not 12 s after the first look.
        await sessions.advance(by: .seconds(6))
        #expect(await sessions.rechecksDue == 0)
        #expect(deleted() == ["dev-a"], "nothing more to close")
    }
}
