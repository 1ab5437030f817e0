import Crypto
import DevIDCore
import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Issue #12, black-box: the built `devid serve` in a temporary data directory, its registry tampered with by
/// `sqlite3` while it is stopped (as someone who can write the database file would), and `devid audit verify`
/// naming each kind of tampering in its own line with a non-zero exit. Also the signed checkpoint file, `devid audit
/// export`, and a client certificate with a 24-octet serial (which broke `audit list` and `audit verify` before).
///
/// Needs `sqlite3`, `openssl` and `curl` on the PATH (scripts/test installs them).
@Suite("devid audit: tamper evidence (black-box)", .serialized)
struct AuditTamperTests {
    @Test(
        "edited, middle-deleted, tail-deleted and recomputed trails each fail verify with their own line",
        .timeLimit(.minutes(8)))
    func tamperingIsNamed() async throws {
        let work = try TemporaryDirectory(prefix: "devid-audit-tamper")
        defer { work.remove() }
        let dataDir = work.file("data")

        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { server.kill() }
        _ = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        for index in 1...6 {
            let created = try await ServeCLITests.devid(
                ["tenant", "create", "t\(index)", "--data-dir", dataDir], in: work.path)
            try #require(created.succeeded, "\(created)")
        }
        let intact = try await ServeCLITests.devid(["audit", "verify", "--data-dir", dataDir], in: work.path)
        #expect(intact.succeeded, "\(intact)")
        #expect(intact.stdout.hasPrefix("audit chain intact: "), "\(intact)")
        #expect(intact.stdout.contains(", keyed from sequence 1"), "\(intact)")

        // Export: JSON lines, oldest first, every field plus previousHash and hash; --after continues.
        let exportPath = work.file("audit.jsonl")
        let export = try await ServeCLITests.devid(
            ["audit", "export", "--out", exportPath, "--page-size", "3", "--data-dir", dataDir], in: work.path)
        try #require(export.succeeded, "\(export)")
        let lines = try String(contentsOfFile: exportPath, encoding: .utf8).split(separator: "\n")
        let exported = try lines.map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(exported.map { $0["sequence"] as? Int } == Array(1...lines.count).map { $0 })
        #expect(export.stdout == "exported \(lines.count) audit entries (sequence 1-\(lines.count)) to \(exportPath)\n")
        for entry in exported {
            for key in ["time", "timeMillis", "actor", "action", "outcome", "reason", "previousHash", "hash"] {
                #expect(entry[key] != nil, "\(key) missing in \(entry)")
            }
        }
        #expect(exported.contains { $0["action"] as? String == "tenant.create" && $0["tenant"] as? String == "t3" })
        #expect(try Self.mode(exportPath) == 0o600)
        let after = try await ServeCLITests.devid(["audit", "export", "--after", "5", "--data-dir", dataDir], in: work.path)
        try #require(after.succeeded, "\(after)")
        #expect(after.stdout.split(separator: "\n").first?.contains("\"sequence\":6,") == true, "\(after.stdout)")

        // Graceful stop writes the shutdown checkpoint: the head as stored, signed with a key not in the registry.
        let stopped = try await server.interrupt(timeout: 20)
        #expect(stopped.exitedNormally && stopped.status == 0, "\(stopped)")
        let database = "\(dataDir)/registry.sqlite"
        let head = try Self.run("sqlite3", [database, "SELECT sequence || ' ' || hash FROM audit_events ORDER BY sequence DESC LIMIT 1"])
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        let checkpointPath = "\(dataDir)/audit/checkpoints.jsonl"
        #expect(try Self.mode(checkpointPath) == 0o600)
        let checkpoint = try Self.lastCheckpoint(checkpointPath)
        #expect(String(checkpoint["sequence"] as? Int ?? -1) == head.first)
        #expect(checkpoint["hash"] as? String == head.last)
        #expect(checkpoint["keyedFrom"] as? Int == 1)
        #expect(checkpoint["reason"] as? String == "shutdown")
        try Self.expectSignatureVerifies(checkpoint, publicKey: "\(dataDir)/audit/checkpoint-key.pem", in: work)
        #expect(server.stderr().contains("audit checkpoint"), "the checkpoint is logged for shipping")
        let last = try #require(head.first.flatMap { Int64($0) })

        // Each kind of tampering, on its own copy of the stopped data directory.
        let scenarios: [(String, (String) throws -> Void, (String) throws -> String)] = [
            (
                "edited",
                { try Self.sqlite($0, "UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 4") },
                { _ in "audit chain broken at sequence 4: entry 4 was edited (its hash does not match its content)" }
            ),
            (
                "middle",
                { try Self.sqlite($0, "DELETE FROM audit_events WHERE sequence = 5") },
                { _ in "audit chain broken at sequence 6: entry 5 is missing (deleted from the middle of the trail)" }
            ),
            (
                "tail",
                { try Self.sqlite($0, "DELETE FROM audit_events WHERE sequence > (SELECT MAX(sequence) - 2 FROM audit_events)") },
                // The server appends (this verify's own admin.auth grant) over the deleted sequence numbers.
                { _ in
                    "audit chain broken at sequence \(last - 1): entries after \(last - 2) are missing (deleted from the end: the signed checkpoint covers \(last))"
                }
            ),
            (
                "recomputed",
                { database in
                    try Self.sqlite(database, "UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 4")
                    try Self.recomputePlainSHA256(database, from: 4, in: work)
                },
                { _ in "audit chain broken at sequence 4: the chain was recomputed from entry 4 on (consistent hashes, but not keyed with the audit key)" }
            ),
        ]
        for (name, tamper, expected) in scenarios {
            let copy = work.file("data-\(name)")
            try FileManager.default.copyItem(atPath: dataDir, toPath: copy)
            try tamper("\(copy)/registry.sqlite")
            let tampered = try ServeProcess.start(dataDir: copy, workingDirectory: work.path)
            defer { tampered.kill() }
            _ = try await tampered.waitUntilListening(timeout: ServeCLITests.startTimeout)
            let verify = try await ServeCLITests.devid(["audit", "verify", "--data-dir", copy], in: work.path)
            #expect(verify.status != 0, "\(name): \(verify)")
            #expect(verify.stdout.isEmpty, "\(name): \(verify)")
            #expect(verify.stderr == "Error: \(try expected("\(copy)/registry.sqlite"))\n", "\(name): \(verify)")
            let json = try await ServeCLITests.devid(["audit", "verify", "--json", "--data-dir", copy], in: work.path)
            #expect(json.status != 0, "\(name): \(json)")
            #expect(json.stdout.contains("\"intact\" : false"), "\(name): \(json)")
            _ = try await tampered.interrupt(timeout: 20)
        }
    }

    @Test("a client certificate with a 24-octet serial no longer breaks audit list or verify", .timeLimit(.minutes(4)))
    func oversizedSerial() async throws {
        let work = try TemporaryDirectory(prefix: "devid-audit-serial")
        defer { work.remove() }
        let dataDir = work.file("data")
        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)

        // openssl makes a self-signed certificate with a 24-octet serial; curl presents it to the mTLS listener.
        let serial = "5a" + (1..<24).map { String(format: "%02x", ($0 * 131 + 7) & 0xff) }.joined()
        _ = try Self.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                work.file("evil.key"), "-out", work.file("evil.crt"), "-subj", "/CN=evil", "-days", "1",
                "-set_serial", "0x" + serial,
            ])
        let curl = try Self.run(
            "curl",
            [
                "-sS", "--max-time", "20", "--cacert", "\(dataDir)/ca/root.crt", "--cert", work.file("evil.crt"),
                "--key", work.file("evil.key"), endpoints.estURL + "/v1/tls/peer",
            ], allowFailure: true)
        #expect(!curl.contains("\"authenticated\":true"), "\(curl)")

        let list = try await ServeCLITests.devid(
            ["audit", "list", "--action", "tls.client_auth", "--json", "--data-dir", dataDir], in: work.path)
        try #require(list.succeeded, "\(list)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        let refusal = try #require(rows.first, "\(list.stdout)")
        #expect(refusal["outcome"] as? String == "denied")
        #expect(refusal["serial"] as? String == "0000" + serial.prefix(36), "\(refusal)")
        #expect(
            refusal["reason"] as? String
                == "certificate does not chain to a trusted CA; serial of 24 octets exceeds RFC 5280's 20, recorded truncated")
        let table = try await ServeCLITests.devid(["audit", "list", "--data-dir", dataDir], in: work.path)
        #expect(table.succeeded, "\(table)")

        let verify = try await ServeCLITests.devid(["audit", "verify", "--data-dir", dataDir], in: work.path)
        #expect(verify.succeeded, "\(verify)")
        #expect(verify.stdout.hasPrefix("audit chain intact: "), "\(verify)")
        _ = try await server.interrupt(timeout: 20)
    }

    // MARK: - Tools

    static func mode(_ path: String) throws -> Int {
        ((try FileManager.default.attributesOfItem(atPath: path))[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    static func lastCheckpoint(_ path: String) throws -> [String: Any] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    /// The documented signed message, checked with `openssl pkeyutl` against the published public key; a changed
    /// message must not verify.
    static func expectSignatureVerifies(_ checkpoint: [String: Any], publicKey: String, in work: TemporaryDirectory)
        throws
    {
        let fields: [String] = [
            checkpoint["format"] as? String ?? "", String(checkpoint["sequence"] as? Int ?? -1),
            checkpoint["hash"] as? String ?? "", (checkpoint["keyedFrom"] as? Int).map(String.init) ?? "",
            checkpoint["time"] as? String ?? "",
        ]
        #expect(fields[0] == "devid-audit-checkpoint-v1")
        let signature = try #require(Data(base64Encoded: checkpoint["signature"] as? String ?? ""))
        try signature.write(to: URL(fileURLWithPath: work.file("checkpoint.sig")))
        try Data(fields.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: work.file("checkpoint.msg")))
        let verified = try run(
            "openssl",
            [
                "pkeyutl", "-verify", "-pubin", "-inkey", publicKey, "-rawin", "-in", work.file("checkpoint.msg"),
                "-sigfile", work.file("checkpoint.sig"),
            ])
        #expect(verified.contains("Signature Verified Successfully"), "\(verified)")
        try Data((fields.joined(separator: "\n") + "1").utf8).write(to: URL(fileURLWithPath: work.file("forged.msg")))
        let forged = try run(
            "openssl",
            [
                "pkeyutl", "-verify", "-pubin", "-inkey", publicKey, "-rawin", "-in", work.file("forged.msg"),
                "-sigfile", work.file("checkpoint.sig"),
            ], allowFailure: true)
        #expect(!forged.contains("Signature Verified Successfully"), "\(forged)")
    }

    static func sqlite(_ database: String, _ sql: String) throws {
        _ = try run("sqlite3", [database, sql])
    }

    /// Rewrites every entry from `sequence` on with plain SHA-256 (what someone without the audit key can compute),
    /// so that each entry's links and hash are consistent again: read with `sqlite3 -json`, hashed here, written back
    /// with `sqlite3`.
    static func recomputePlainSHA256(_ database: String, from sequence: Int, in work: TemporaryDirectory) throws {
        var previous = try run(
            "sqlite3", [database, "SELECT hash FROM audit_events WHERE sequence = \(sequence - 1)"]
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let json = try run(
            "sqlite3", ["-json", database, "SELECT * FROM audit_events WHERE sequence >= \(sequence) ORDER BY sequence"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        var script = "BEGIN;\n"
        for row in rows {
            func text(_ key: String) -> String {
                if let value = row[key] as? String { return value }
                if let value = row[key] as? Int { return String(value) }
                return ""
            }
            let content = [
                "sequence", "occurred_at", "actor", "action", "outcome", "reason", "tenant_id", "device_id", "serial",
            ].map { text($0) }.map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
            let hash = SHA256.hash(data: Data((previous + "|" + content).utf8)).map { String(format: "%02x", $0) }
                .joined()
            script += "UPDATE audit_events SET previous_hash = '\(previous)', hash = '\(hash)' WHERE sequence = \(text("sequence"));\n"
            previous = hash
        }
        script += "COMMIT;\n"
        let path = work.file("recompute.sql")
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        _ = try run("sqlite3", [database, ".read \(path)"])
    }

    /// Runs a tool from the PATH to completion; its stdout and stderr together. Throws on a non-zero exit unless
    /// `allowFailure`.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> String {
        // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
        let output = Pipe.closeOnExec()
        let process = try SpawnedProcess.start(
            "/usr/bin/env", [tool] + arguments, stdout: output.fileHandleForWriting, stderr: output.fileHandleForWriting)
        try? output.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let status = process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if !allowFailure, status != 0 {
            throw ToolError(description: "\(tool) \(arguments.joined(separator: " ")) exited \(status): \(text)")
        }
        return text
    }

    struct ToolError: Error, CustomStringConvertible {
        var description: String
    }
}
