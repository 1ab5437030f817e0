"""Server CPU and bytes on the wire per device check-in (GET /v1/device/status over mTLS with an LDevID), with a
full handshake on every connection versus a resumed TLS session (TLS 1.2 session id, TLS 1.3 ticket).

    python3 checkin_resumption.py PORT SERVER_PID CERT KEY COUNT

Every check-in is a new TCP connection with `Connection: close`. Bytes are counted at the TLS record layer (the
ssl module runs over a MemoryBIO, so every byte this client wrote to or read from the socket is counted; TCP/IP
headers are not). The server's CPU is utime+stime of SERVER_PID from /proc/PID/stat around each run of COUNT.
Prints one JSON document.
"""
import json, os, socket, ssl, sys, time

port, pid, cert, key, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
HZ = os.sysconf("SC_CLK_TCK")
REQUEST = b"GET /v1/device/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def server_cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def checkin(context, session):
    """One check-in on a new connection; returns (status, reused, bytes_out, bytes_in, session)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost", session=session)
    sent = received = 0

    def flush():
        nonlocal sent
        data = outgoing.read()
        if data:
            sock.sendall(data)
            sent += len(data)

    def fill():
        nonlocal received
        data = sock.recv(65536)
        if not data:
            incoming.write_eof()
        else:
            received += len(data)
            incoming.write(data)
        return bool(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            if not fill():
                raise ConnectionError("closed during the handshake")
    tls.write(REQUEST)
    flush()
    response = b""
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:
                break
            response += chunk
        except ssl.SSLWantReadError:
            flush()
            if not fill():
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    flush()
    sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, tls.session_reused, sent, received, tls.session


def run(version, resume):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The client does not check the server's chain: it changes nothing the server does.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    context.minimum_version = context.maximum_version = version
    # One warm-up check-in gives the session (and warms the server's code paths).
    status, _, _, _, session = checkin(context, None)
    assert status == 200, status
    statuses, reused, sent, received = {}, 0, 0, 0
    start_cpu, start = server_cpu(), time.monotonic()
    for _ in range(count):
        status, was_reused, out, inn, new_session = checkin(context, session if resume else None)
        statuses[status] = statuses.get(status, 0) + 1
        reused += was_reused
        sent += out
        received += inn
        if resume and new_session is not None:
            session = new_session  # TLS 1.3 hands out a fresh ticket on each connection
    cpu, wall = server_cpu() - start_cpu, time.monotonic() - start
    return {
        "tls": "1.2" if version == ssl.TLSVersion.TLSv1_2 else "1.3",
        "handshake": "resumed" if resume else "full",
        "checkIns": count,
        "statuses": {str(k): v for k, v in statuses.items()},
        "sessionsReused": reused,
        "serverCPUms": round(cpu * 1000 / count, 3),
        "bytesClientToServer": round(sent / count, 1),
        "bytesServerToClient": round(received / count, 1),
        "checkInsPerSecond": round(count / wall, 1),
    }


results = []
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    for resume in (False, True):
        results.append(run(version, resume))
print(json.dumps({"load": open("/proc/loadavg").read().split()[:3], "runs": results}, indent=1))
