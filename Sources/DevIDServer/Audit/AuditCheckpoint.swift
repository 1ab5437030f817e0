public import Crypto
public import DevIDStore
import Foundation

/// A signed statement of the audit chain's head, kept outside the registry (`DATA/audit/checkpoints.jsonl`) and
/// logged, so that deleting the newest entries or recomputing the chain is noticed.
///
/// One JSON object per line: `format`, `sequence`, `hash`, `keyedFrom` (absent if no entry was keyed), `time`
/// (ISO 8601 UTC with milliseconds, from the server's clock), `reason` (`interval` or `shutdown`, not signed) and
/// `signature`: base64 Ed25519 over the UTF-8 of ``signedMessage``, i.e. these lines joined by `\n`:
///
/// ```
/// devid-audit-checkpoint-v1
/// <sequence>
/// <hash>
/// <keyedFrom, or empty>
/// <time>
/// ```
///
/// The public key is in `DATA/audit/checkpoint-key.pem` for anyone to check a line (e.g. `openssl pkeyutl -verify
/// -pubin -inkey checkpoint-key.pem -rawin -in message -sigfile signature`); the server itself checks against the
/// key it derives from its audit secret, never against that file.
public struct AuditCheckpoint: Sendable, Hashable, Codable {
    public static let format = "devid-audit-checkpoint-v1"

    public var format: String
    public var sequence: Int64
    public var hash: String
    public var keyedFrom: Int64?
    public var time: String
    public var reason: String?
    public var signature: String

    /// What the signature covers.
    public var signedMessage: String {
        [format, String(sequence), hash, keyedFrom.map(String.init) ?? "", time].joined(separator: "\n")
    }

    /// The anchor to verify the chain against.
    public var anchor: AuditAnchor {
        AuditAnchor(
            sequence: sequence, hash: hash, keyedFrom: keyedFrom,
            timeMillis: Self.timeFormatter.date(from: time).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) })
    }

    /// A new checkpoint of `anchor` at `time`, signed with `secret`.
    init(anchor: AuditAnchor, time: Date, reason: String, secret: AuditSecret) throws {
        self.format = Self.format
        self.sequence = anchor.sequence
        self.hash = anchor.hash
        self.keyedFrom = anchor.keyedFrom
        self.time = Self.timeFormatter.string(from: time)
        self.reason = reason
        self.signature = ""
        self.signature = try secret.signingKey.signature(for: Array(signedMessage.utf8)).base64EncodedString()
    }

    /// Whether `publicKey` signed this checkpoint.
    public func isValid(publicKey: Curve25519.Signing.PublicKey) -> Bool {
        guard format == Self.format, let signature = Data(base64Encoded: signature) else { return false }
        return publicKey.isValidSignature(signature, for: Array(signedMessage.utf8))
    }

    nonisolated(unsafe) static let timeFormatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}

/// `DATA/audit/checkpoints.jsonl` (0600, appended to) and `DATA/audit/checkpoint-key.pem` (the public key, 0644).
public struct AuditCheckpointFile: Sendable {
    public let path: String
    public let publicKeyPath: String

    public init(dataDirectory: String) {
        path = dataDirectory + "/audit/checkpoints.jsonl"
        publicKeyPath = dataDirectory + "/audit/checkpoint-key.pem"
    }

    /// What the file holds: the newest validly signed checkpoint, and how many lines are not one.
    public struct Contents: Sendable {
        public var newest: AuditCheckpoint?
        public var invalidLines: Int
    }

    /// Reads every line, checking each signature against `publicKey`; a missing file is empty.
    public func read(publicKey: Curve25519.Signing.PublicKey) throws -> Contents {
        guard FileManager.default.fileExists(atPath: path) else { return Contents(newest: nil, invalidLines: 0) }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var contents = Contents(newest: nil, invalidLines: 0)
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.allSatisfy({ $0 == UInt8(ascii: " ") }) {
            guard let checkpoint = try? decoder.decode(AuditCheckpoint.self, from: Data(line)),
                checkpoint.isValid(publicKey: publicKey)
            else {
                contents.invalidLines += 1
                continue
            }
            // The highest sequence wins; of two at one sequence, the earlier line.
            if checkpoint.sequence > (contents.newest?.sequence ?? 0) { contents.newest = checkpoint }
        }
        return contents
    }

    /// Appends one line and syncs it to disk; creates the directory, the file (0600) and the public key file.
    func append(_ checkpoint: AuditCheckpoint, publicKey: Curve25519.Signing.PublicKey) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try writePublicKey(publicKey)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(checkpoint)
        line.append(UInt8(ascii: "\n"))
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw AuditCheckpointError("cannot open \(path): errno \(errno)") }
        defer { close(descriptor) }
        // A full disk (ENOSPC) can cut a line short after part of it was written: the file is cut back to where it
        // ended, so that the next append does not glue its line onto a torn one (which would read as a tampered
        // checkpoint and lose the new one). Shrinking a file needs no space.
        let end = lseek(descriptor, 0, SEEK_END)
        do {
            try line.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    guard written > 0 else { throw AuditCheckpointError("cannot write \(path): errno \(errno)") }
                    offset += written
                }
            }
            guard fsync(descriptor) == 0 else { throw AuditCheckpointError("cannot sync \(path): errno \(errno)") }
        } catch {
            if end >= 0 { _ = ftruncate(descriptor, end) }
            throw error
        }
    }

    private func writePublicKey(_ publicKey: Curve25519.Signing.PublicKey) throws {
        let pem = Self.pem(publicKey)
        if let existing = try? String(contentsOfFile: publicKeyPath, encoding: .utf8), existing == pem { return }
        try Data(pem.utf8).write(to: URL(fileURLWithPath: publicKeyPath), options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: publicKeyPath)
    }

    /// The Ed25519 SubjectPublicKeyInfo (RFC 8410) as PEM.
    static func pem(_ publicKey: Curve25519.Signing.PublicKey) -> String {
        let der: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
            + Array(publicKey.rawRepresentation)
        return "-----BEGIN PUBLIC KEY-----\n" + Data(der).base64EncodedString() + "\n-----END PUBLIC KEY-----\n"
    }
}

/// Writing the checkpoint file failed.
public struct AuditCheckpointError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
