import DevIDTesting
import Foundation

/// A small Python client for what Swift's HTTP client will not do on purpose: connect and say nothing, idle on a
/// keep-alive connection, hold many connections from one source address, and resume a TLS session
/// (`ssl` with `session=`, checking `session_reused`).
enum ConnectionProbe {
    static let script = #"""
import json, socket, ssl, sys, time, urllib.request

def until_closed(sock, limit):
    sock.settimeout(limit)
    start = time.monotonic()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return round(time.monotonic() - start, 2)
    except (socket.timeout, TimeoutError):
        return "open"
    except (ConnectionResetError, BrokenPipeError):
        return round(time.monotonic() - start, 2)

mode = sys.argv[1]
if mode == "silent":            # connect, never send a ClientHello
    port, limit = int(sys.argv[2]), float(sys.argv[3])
    s = socket.create_connection(("127.0.0.1", port))
    print(json.dumps({"closedAfter": until_closed(s, limit)}))
elif mode == "idle":            # one keep-alive request, then idle
    port, limit = int(sys.argv[2]), float(sys.argv[3])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/admin/devices HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536).decode(errors="replace").split("\r\n")[0]
    print(json.dumps({"first": first, "closedAfter": until_closed(s, limit)}))
elif mode == "idle-tls":        # mTLS handshake with a device certificate, one keep-alive request, then idle
    port, limit, cert, key, ca = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET /v1/device/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536).decode(errors="replace").split("\r\n")[0]
    print(json.dumps({"first": first, "closedAfter": until_closed(s, limit)}))
elif mode == "hold":            # N connections from one source address, held for a while
    source, port, count, seconds, ready = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    def state():
        open_, closed = 0, 0
        for s in socks:
            s.setblocking(False)
            try:
                closed += 1 if s.recv(1) == b"" else 0
            except BlockingIOError:
                open_ += 1
            except (ConnectionResetError, OSError):
                closed += 1
        return open_, closed
    o, c = state()
    # The server closes connections over its cap at accept; on a loaded machine that can take
    # longer than the half second above: wait (at most 15 s) for the closures the caller expects.
    settle = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    deadline = time.monotonic() + 15
    while c < settle and time.monotonic() < deadline:
        time.sleep(0.1)
        o, c = state()
    open(ready, "w").write(json.dumps({"open": o, "closed": c}))
    time.sleep(seconds)
    o2, c2 = state()
    print(json.dumps({"openAtStart": o, "closedAtStart": c, "openAtEnd": o2, "closedAtEnd": c2}))
elif mode == "resume":          # full handshake, resumed, revoke, resumed again
    port, cert, key, ca, version, ops, token, device = sys.argv[2:10]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    def status(session):
        raw = socket.create_connection(("127.0.0.1", int(port)))
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        s.sendall(b"GET /v1/device/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        result = {"status": int(data.split(b" ")[1]), "reused": s.session_reused}
        sess = s.session
        s.close()
        return result, sess
    out = {}
    out["full"], session = status(None)
    out["resumed"], session2 = status(session)
    req = urllib.request.Request(ops + "/v1/admin/revoke", method="POST",
        data=json.dumps({"device": device}).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    out["revoke"] = urllib.request.urlopen(req).status
    out["afterRevoke"], _ = status(session)
    print(json.dumps(out))
"""#

    /// Writes the script into `directory` and runs one mode; returns its JSON output.
    static func run(_ arguments: [String], in directory: TemporaryDirectory) async throws -> [String: Any] {
        let path = try directory.write("probe.py", script)
        let result = try await ExternalTool.runAsync(["python3", path] + arguments)
        guard result.succeeded, let data = result.stdout.data(using: .utf8),
            let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw ProbeError(message: "probe \(arguments.first ?? "") failed: \(result.stderr) \(result.stdout)")
        }
        return json
    }

    struct ProbeError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}
