@testable import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Issue #13 part 5, black-box: `devid serve` with its whole data directory on a 16 MB tmpfs, which the test then
/// fills with a filler file. Enrollment must answer `503` with `Retry-After`, `DevID-Refusal: storage_full` and one
/// line (not 500, not a hang); nothing may be issued that is not recorded; what was stored stays intact; check-in,
/// OCSP, the CRL and `/healthz` keep answering; the log says "disk full" once; and when the filler goes, the next
/// enrollment succeeds with no restart and `devid audit verify` passes.
///
/// The tmpfs is mounted directly when the test runs as root; otherwise the server runs in a user and mount namespace
/// of its own (`unshare --user --map-root-user --mount`) that mounts it, and the test reaches it through
/// `/proc/PID/root`. With neither, the test is skipped and says why.
@Suite("faults: registry filesystem full (black-box)", .serialized)
struct DiskFullTests {
    static let size = "16m"
    static let mode = SizedFilesystem.probe()

    @Test(
        "a full registry disk: 503 with Retry-After, nothing unrecorded, reads answer, recovery without restart",
        .enabled(
            if: mode != nil,
            "needs root (mount -t tmpfs) or user namespaces (unshare --user --map-root-user --mount); neither works here"),
        .timeLimit(.minutes(8)))
    func diskFull() async throws {
        let mode = try #require(Self.mode)
        print("DiskFullTests: tmpfs of \(Self.size) mounted \(mode)")
        let work = try TemporaryDirectory(prefix: "devid-diskfull")
        defer { work.remove() }
        let filesystem = try SizedFilesystem(mode: mode, at: work.file("fs"), size: Self.size)
        defer { filesystem.unmount() }

        let server = try ServeProcess.start(
            dataDir: filesystem.insidePath + "/data", workingDirectory: work.path, environment: FaultHarness.unlimited,
            launcher: filesystem.launcher)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        let dataDir = server.dataDir  // as this process sees it
        let mount = URL(fileURLWithPath: dataDir).deletingLastPathComponent().path
        let created = try await ServeCLITests.devid(["tenant", "create", "acme", "--data-dir", dataDir], in: work.path)
        try #require(created.succeeded, "\(created)")
        let adminToken = try FaultHarness.adminToken(dataDir)
        let tokens = try await FaultHarness.makeTokens(
            count: 30, tenant: "acme", prefix: "df", opsURL: endpoints.opsURL, adminToken: adminToken)
        let root = try FaultHarness.root(dataDir)

        // Before: one device enrolled, which will check in and be asked about over OCSP while the disk is full.
        let key = try Enroller.newKey().key
        let before = try await FaultHarness.enroll(
            estURL: endpoints.estURL, root: root, token: tokens[0],
            csr: try Enroller.csr(deviceID: DeviceID(rawValue: tokens[0].device), key: key))
        let issuing = try Certificate(pemEncoded: try String(contentsOfFile: "\(dataDir)/ca/issuing.crt", encoding: .utf8))
        let device = try ESTClient(
            baseURL: endpoints.estURL, trustRoots: [root],
            clientIdentity: ESTClient.Identity(certificateChain: [before, issuing], privateKey: key))
        let status = try await device.deviceStatus()
        #expect(status.device.rawValue == tokens[0].device)
        var received: [String: Certificate] = [tokens[0].device: before]

        // Fill the filesystem. The WAL is truncated first (a checkpoint from a second connection, as any sqlite3
        // user can), so that the next commit has to grow it and meets the full disk at once instead of reusing WAL
        // pages from before.
        let pid = server.process.processIdentifier
        _ = try FaultHarness.query(
            filesystem.sqlitePath(observed: dataDir), "PRAGMA wal_checkpoint(TRUNCATE)", via: filesystem.enter(pid))
        let filler = "\(mount)/filler"
        let filled = try Self.fill(filler)
        print("DiskFullTests: filler of \(filled / 1_048_576) MB")

        // Enrollments now: each either answers 503 storage_full (nothing stored) or, while SQLite still finds room
        // in pages it holds, issues a certificate that must be recorded. At least one 503 within 20 tries.
        var refusedTokens: [FaultHarness.Token] = []
        var next = 1
        while next < 21, refusedTokens.count < 3 {
            let token = tokens[next]
            next += 1
            let started = ContinuousClock.now
            do {
                let certificate = try await FaultHarness.enroll(
                    estURL: endpoints.estURL, root: root, token: token, csr: try FaultHarness.csr(device: token.device))
                received[token.device] = certificate
            } catch let error as AgentError {
                #expect(error.status == 503, "\(error)")
                #expect(error.retryAfter == StorageAlarm.retryAfterSeconds, "\(error)")
                #expect(error.serverCode == .storageFull, "\(error)")
                #expect(error.serverReason == "registry storage is full: nothing was changed; retry later", "\(error)")
                refusedTokens.append(token)
            }
            #expect(ContinuousClock.now - started < .seconds(60), "answered, not hung")
        }
        try #require(!refusedTokens.isEmpty, "no 503 in 20 enrollments on a full disk")
        print("DiskFullTests: \(received.count - 1) issued after the fill, then \(refusedTokens.count) refused")
        #expect(server.process.isRunning, "the server is still running")

        // An admin write: the same 503 from the route edge.
        let tenant = try await FaultHarness.admin(
            "POST", endpoints.opsURL, "/v1/admin/tenants", token: adminToken, json: ["id": "full"])
        #expect(tenant.status == 503, "\(tenant.status) \(String(decoding: tenant.body, as: UTF8.self))")
        #expect(String(decoding: tenant.body, as: UTF8.self) == "registry storage is full: nothing was changed; retry later\n")

        // Reads keep working: check-in, OCSP, the CRL, /healthz.
        let checkIn = try await device.deviceStatus()
        #expect(checkIn.device.rawValue == tokens[0].device)
        let devicePEM = work.file("device.pem")
        let issuingPEM = "\(dataDir)/ca/issuing.crt"
        try before.serializeAsPEM().pemString.write(toFile: devicePEM, atomically: true, encoding: .utf8)
        let ocsp = try AuditTamperTests.run(
            "openssl",
            [
                "ocsp", "-issuer", issuingPEM, "-cert", devicePEM, "-url", endpoints.opsURL + "/ocsp", "-CAfile",
                "\(dataDir)/ca/root.crt", "-no_nonce", "-timeout", "30",
            ], allowFailure: true)
        #expect(ocsp.contains("\(devicePEM): good"), "\(ocsp)")
        let crl = try AuditTamperTests.run(
            "curl", ["-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", endpoints.opsURL + "/crl/issuing.crl"])
        #expect(crl == "200", "\(crl)")
        let health = try AuditTamperTests.run(
            "curl", ["-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", endpoints.opsURL + "/healthz"])
        #expect(health == "200", "\(health)")

        // One log line for the whole episode.
        let fullLines = server.stderr().split(separator: "\n").filter { $0.contains("registry disk full") }
        #expect(fullLines.count == 1, "\(fullLines)")
        #expect(!server.stderr().contains("enrollment failed"), "\(server.stderr().suffix(3_000))")

        // Space returns: the next enrollment succeeds by itself, no restart.
        try FileManager.default.removeItem(atPath: filler)
        let after = tokens[next]
        let recovered = try await FaultHarness.enroll(
            estURL: endpoints.estURL, root: root, token: after, csr: try FaultHarness.csr(device: after.device))
        received[after.device] = recovered
        // A token refused while the disk was full was not spent: it enrolls now.
        let retried = refusedTokens[0]
        received[retried.device] = try await FaultHarness.enroll(
            estURL: endpoints.estURL, root: root, token: retried, csr: try FaultHarness.csr(device: retried.device))
        let spaceLine = try await Self.waitForLog(server, containing: "registry disk has space again")
        #expect(spaceLine.contains("refused_while_full"), "\(spaceLine)")
        let verify = try await ServeCLITests.devid(["audit", "verify", "--data-dir", dataDir], in: work.path)
        #expect(verify.succeeded, "\(verify)")
        #expect(verify.stdout.hasPrefix("audit chain intact: "), "\(verify)")

        // In a namespace the tmpfs goes with the server: take a consistent copy while it runs.
        if filesystem.mode == .namespace {
            _ = try FaultHarness.query(
                filesystem.sqlitePath(observed: dataDir), ".backup '\(work.file("registry-copy.sqlite"))'",
                via: filesystem.enter(server.process.processIdentifier))
        }
        // Stop cleanly (the shutdown checkpoint is written), then look at the stopped registry.
        let stopped = try await server.interrupt(timeout: 30)
        #expect(stopped.exitedNormally && stopped.status == 0, "\(stopped)")
        try await Self.checkStopped(
            filesystem: filesystem, dataDir: dataDir, work: work, received: received,
            unspent: Array(refusedTokens.dropFirst()))
    }

    /// On the stopped registry: integrity, every certificate received recorded with its bytes, and nothing stored for
    /// the tokens refused while the disk was full (other than the one retried after).
    static func checkStopped(
        filesystem: SizedFilesystem, dataDir: String, work: TemporaryDirectory, received: [String: Certificate],
        unspent: [FaultHarness.Token]
    ) async throws {
        // In a namespace the mount went with the server: it was copied out while the server ran.
        let database = filesystem.mode == .namespace ? work.file("registry-copy.sqlite") : "\(dataDir)/registry.sqlite"
        #expect(try FaultHarness.query(database, "PRAGMA integrity_check") == [["ok"]])
        for (device, certificate) in received {
            let row = try FaultHarness.query(
                database, "SELECT device_id, certificate_sha256 FROM credentials WHERE serial = '\(FaultHarness.serial(certificate))'")
            #expect(row == [[device, certificate.sha256Fingerprint]], "\(device): \(row)")
        }
        for token in unspent {
            let remaining = try FaultHarness.query(database, "SELECT uses_remaining FROM claim_tokens WHERE id = '\(token.id)'")
            #expect(remaining == [["1"]], "\(token.device): token not spent")
            let credentials = try FaultHarness.query(
                database, "SELECT COUNT(*) FROM credentials WHERE device_id = '\(token.device)'")
            #expect(credentials == [["0"]], "\(token.device): nothing stored")
        }
    }

    /// Writes zeros to `path` until the filesystem is full; the bytes written.
    static func fill(_ path: String) throws -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw ServeError("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        var total = 0
        for size in [1 << 20, 4_096, 512] {
            let chunk = [UInt8](repeating: 0, count: size)
            while true {
                let written = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
                if written <= 0 { break }
                total += written
            }
        }
        return total
    }

    static func waitForLog(_ server: ServeProcess, containing text: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let line = server.stderr().split(separator: "\n").first(where: { $0.contains(text) }) {
                return String(line)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeError("no log line with \"\(text)\": \(server.stderr().suffix(2_000))")
    }
}

/// A size-limited tmpfs: mounted here when this process may (root), or by the server itself inside a user and mount
/// namespace (`launcher`), then seen through `/proc/PID/root`.
struct SizedFilesystem: Sendable {
    enum Mode: Sendable, CustomStringConvertible {
        case direct, namespace
        var description: String { self == .direct ? "directly (root)" : "in a user and mount namespace (unshare)" }
    }

    let mode: Mode
    /// The mount point as the server sees it.
    let insidePath: String
    /// Prefix for `ServeProcess.start(launcher:)`; empty when mounted directly.
    let launcher: [String]

    init(mode: Mode, at path: String, size: String) throws {
        self.mode = mode
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        insidePath = path
        switch mode {
        case .direct:
            _ = try AuditTamperTests.run("mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", path])
            launcher = []
        case .namespace:
            launcher = [
                "unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                "mount -t tmpfs -o size=\(size),mode=0700 tmpfs '\(path)' && exec \"$@\"", "sh",
            ]
        }
    }

    /// The registry's path for `sqlite3`: SQLite resolves symbolic links itself, so `/proc/PID/root/...` does not
    /// reach into the namespace; there it is the inside path, opened by a `sqlite3` run inside (``enter(_:)``).
    func sqlitePath(observed dataDir: String) -> String {
        mode == .direct ? "\(dataDir)/registry.sqlite" : "\(insidePath)/data/registry.sqlite"
    }

    /// Runs a command in the server's user and mount namespace (nothing when mounted directly).
    func enter(_ pid: Int32) -> [String] {
        mode == .direct ? [] : ["nsenter", "--target", "\(pid)", "--user", "--mount", "--preserve-credentials"]
    }

    func unmount() {
        if mode == .direct { _ = try? AuditTamperTests.run("umount", ["-l", insidePath], allowFailure: true) }
    }

    /// Which way works here, trying a 1 MB tmpfs each way; nil when neither does. `DEVID_FAULT_MOUNT=namespace`
    /// skips the direct mount (to test the unshare way as root).
    static func probe() -> Mode? {
        let path = NSTemporaryDirectory() + "devid-mount-probe-\(UUID().uuidString.prefix(8))"
        guard (try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)) != nil else {
            return nil
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        if geteuid() == 0, ProcessInfo.processInfo.environment["DEVID_FAULT_MOUNT"] != "namespace",
            (try? AuditTamperTests.run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", path])) != nil
        {
            _ = try? AuditTamperTests.run("umount", [path], allowFailure: true)
            return .direct
        }
        if (try? AuditTamperTests.run(
            "unshare", ["--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs '\(path)'"]))
            != nil
        {
            return .namespace
        }
        return nil
    }
}
