import Crypto
import DevIDPKI
import Foundation
import SwiftASN1
public import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The agent's `--state-dir`: the device's current LDevID and what belongs with it.
///
/// | file | content | mode |
/// | --- | --- | --- |
/// | `key.pem` | the LDevID private key, unencrypted PKCS#8 PEM (`PRIVATE KEY`) | 0600 |
/// | `cert.pem` | the LDevID | 0644 |
/// | `chain.pem` | LDevID, issuing CA, root: the chain as validated at enrollment | 0644 |
/// | `trust.pem` | a copy of the trust bundle the agent trusts the EST server with | 0644 |
/// | `identity.json` | ``EnrolledIdentity``: ids, serial, validity, issuer, server, times | 0644 |
/// | `agent.json` | ``AgentConfiguration``: server, label, IDevID paths, reload hook (for `devid agent run`) | 0644 |
/// | `agent-state.json` | ``AgentMemory``: clock skew, drawn renewal time, backoff, pending steps | 0644 |
/// | `next/` | ``IdentitySlot``: the identity being rotated in (a staged key, then its certificate) | 0700 |
/// | `previous/` | ``IdentitySlot``: the identity rotated out, kept until the new one is confirmed | 0700 |
///
/// The directory itself is created 0700. Every file is written with `SecureFile.write` (temporary file created with
/// its final mode, written, `fsync`ed, renamed over the target, directory `fsync`ed), so each file on its own is
/// always either its old or its new content.
///
/// ## Installing a new identity: crash safety
///
/// A certificate must never be found without its key. Two files cannot be replaced in one atomic step, so
/// ``install(_:)`` uses `cert.pem` as the commit point and a `.next` name for everything else:
///
/// 1. Leftovers of an interrupted install are resolved first (``recover()``).
/// 2. `trust.pem.next`, `chain.pem.next`, `identity.json.next` and `key.pem.next` are written. Nothing the
///    directory's readers use has changed yet.
/// 3. `cert.pem` is replaced. **Commit point**: from here the new certificate is current, and its key is
///    `key.pem.next`.
/// 4. `trust.pem.next`, `chain.pem.next`, `identity.json.next` are renamed into place, then `key.pem.next` →
///    `key.pem` **last**, and the directory is `fsync`ed.
///
/// After a crash at any point, the rule "the key of `cert.pem` is `key.pem.next` if that file exists and holds
/// the certificate's public key, else `key.pem`" always names a matching (key, certificate) pair, or there is no
/// `cert.pem` at all (a first enrollment that crashed before step 3):
///
/// - crash in 1–2: `cert.pem` and `key.pem` are still the old pair (or absent); any `.next` file is uncommitted;
/// - crash in 3: `rename` is atomic, so `cert.pem` is old (as above) or new (as below);
/// - crash in 4: `cert.pem` is new and `key.pem.next` still exists (it is renamed last) and matches it.
///
/// ``recover()`` applies the rule to the directory: if `key.pem.next` matches `cert.pem` it rolls the install
/// forward (renames the remaining `.next` files, key last), otherwise it rolls back (deletes every `.next` file);
/// it also deletes `SecureFile`'s orphaned temporary files. The agent runs it before every install; readers that
/// must not write (``IdentityStatus``) apply the same rule when reading (``effectivePath(_:)``).
///
/// Between steps 3 and 4 a program that reads `key.pem` and `cert.pem` directly (a broker client, say) can see the
/// new certificate with the old key for the few milliseconds the renames take; the agent's reload hook runs only
/// after ``install(_:)`` returns.
public struct AgentStateDirectory: Sendable {
    /// The files of the directory.
    public enum File: String, Sendable, CaseIterable {
        case key = "key.pem"
        case certificate = "cert.pem"
        case chain = "chain.pem"
        case trust = "trust.pem"
        case identity = "identity.json"

        var mode: mode_t { self == .key ? 0o600 : 0o644 }
    }

    /// What ``install(_:)`` writes.
    public struct Installation: Sendable {
        /// PKCS#8 PrivateKeyInfo DER of the new key.
        public var keyPKCS8: [UInt8]
        public var certificate: Certificate
        /// Leaf first, as validated.
        public var chain: [Certificate]
        public var trustBundle: [Certificate]
        public var identity: EnrolledIdentity

        public init(
            keyPKCS8: [UInt8], certificate: Certificate, chain: [Certificate], trustBundle: [Certificate],
            identity: EnrolledIdentity
        ) {
            self.keyPKCS8 = keyPKCS8
            self.certificate = certificate
            self.chain = chain
            self.trustBundle = trustBundle
            self.identity = identity
        }
    }

    public let path: String

    public init(path: String) {
        var trimmed = path
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
    }

    /// The final path of `file`.
    public func path(_ file: File) -> String { "\(path)/\(file.rawValue)" }

    /// The staging path of `file` during an install.
    public func pendingPath(_ file: File) -> String { "\(path)/\(file.rawValue).next" }

    /// Where `file`'s current content is, by the crash-safety rule: the `.next` file while an install is committed
    /// but not finished, else the final path.
    public func effectivePath(_ file: File) -> String {
        if file != .certificate, installIsCommitted(), exists(pendingPath(file)) {
            return pendingPath(file)
        }
        return path(file)
    }

    /// Creates the directory (and missing parents) with mode 0700; an existing directory is left as it is.
    public func create() throws(AgentError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            if component == "." || component == ".." { continue }
            do {
                try SecureFile.createDirectory(prefix, mode: 0o700)
            } catch {
                throw AgentError(.io, "cannot create state directory: \(error.reason)")
            }
        }
    }

    /// Installs a new identity so that a crash at any point leaves a matching (key, certificate) pair or none; see
    /// the type's documentation. Creates the directory if needed.
    public func install(_ installation: Installation) throws(AgentError) {
        try create()
        try recover()
        let identityJSON: [UInt8]
        do {
            identityJSON = Array(try EnrolledIdentity.encoder.encode(installation.identity)) + [UInt8(ascii: "\n")]
        } catch {
            throw AgentError(.invalidState, "identity could not be encoded")
        }
        let keyPEM = AgentKeys.document(installation.keyPKCS8)
        // A token key this install replaces (enrollment over an identity, bootstrap) is deleted once nothing names it.
        let replaced = AgentKeys.tokenMaterial(at: path(.key))
        defer { if let replaced { AgentKeys.destroyIfUnreferenced(replaced, in: self) } }

        do {
            try write(Array(PEM.bundle(installation.trustBundle).utf8), to: pendingPath(.trust), mode: File.trust.mode)
            try write(Array(PEM.bundle(installation.chain).utf8), to: pendingPath(.chain), mode: File.chain.mode)
            try write(identityJSON, to: pendingPath(.identity), mode: File.identity.mode)
            try write(Array(keyPEM.utf8), to: pendingPath(.key), mode: File.key.mode)
            // Commit point.
            try write(
                Array(PEM.bundle([installation.certificate]).utf8), to: path(.certificate), mode: File.certificate.mode)
        } catch {
            // Not committed: the old pair (or nothing) is current; drop what was staged (recovery would, too).
            try? recover()
            throw error
        }
        try finishCommittedInstall()
    }

    /// Completes or undoes an interrupted ``install(_:)`` and removes orphaned temporary files.
    public func recover() throws(AgentError) {
        guard exists(path) else { return }
        removeOrphanedTemporaries()
        if try committedInstall() {
            try finishCommittedInstall()
        } else {
            for file in File.allCases where exists(pendingPath(file)) {
                guard unlink(pendingPath(file)) == 0 || errno == ENOENT else {
                    throw AgentError(.io, "cannot remove \(pendingPath(file)): \(Self.systemReason())")
                }
            }
            try syncDirectory()
        }
    }

    /// The current certificate, or nil if there is none.
    public func certificate() throws(AgentError) -> Certificate? {
        guard let text = try readText(path(.certificate)) else { return nil }
        do {
            return try PEM.certificates(text)[0]
        } catch {
            throw AgentError(.invalidState, "\(path(.certificate)): \(error.reason)")
        }
    }

    /// The current certificate's private key (by the crash-safety rule), or nil if there is none.
    public func privateKey() throws(AgentError) -> Certificate.PrivateKey? {
        let keyPath = effectivePath(.key)
        guard let text = try readText(keyPath) else { return nil }
        do {
            return try AgentKeys.parse(text).key
        } catch {
            throw AgentError(error.code, "\(keyPath): \(error.reason)")
        }
    }

    /// The content of `identity.json` (by the crash-safety rule), or nil if there is none.
    public func identity() throws(AgentError) -> EnrolledIdentity? {
        let identityPath = effectivePath(.identity)
        guard let text = try readText(identityPath) else { return nil }
        do {
            return try EnrolledIdentity.decoder.decode(EnrolledIdentity.self, from: Data(text.utf8))
        } catch {
            throw AgentError(.invalidState, "\(identityPath) does not parse")
        }
    }

    /// The certificates of `trust.pem` (by the crash-safety rule), or nil if there is none.
    public func trustBundle() throws(AgentError) -> [Certificate]? {
        let trustPath = effectivePath(.trust)
        guard let text = try readText(trustPath) else { return nil }
        do {
            return try PEM.certificates(text)
        } catch {
            throw AgentError(.invalidState, "\(trustPath): \(error.reason)")
        }
    }

    /// The certificates of `chain.pem` (by the crash-safety rule), or nil if there is none.
    public func chain() throws(AgentError) -> [Certificate]? {
        let chainPath = effectivePath(.chain)
        guard let text = try readText(chainPath) else { return nil }
        do {
            return try PEM.certificates(text)
        } catch {
            throw AgentError(.invalidState, "\(chainPath): \(error.reason)")
        }
    }

    // MARK: - Helpers

    /// True when `cert.pem` exists and `key.pem.next` exists and holds its public key: an install passed its commit
    /// point and has not finished.
    private func installIsCommitted() -> Bool {
        (try? committedInstall()) ?? false
    }

    /// ``installIsCommitted()`` for recovery: a key that cannot be read now because its token is unavailable (a TPM
    /// daemon not up yet after a power cut) throws `.io` instead of counting as "not committed", which would roll
    /// the install back and lose the new key.
    private func committedInstall() throws(AgentError) -> Bool {
        guard let certificateBytes = try? SecureFile.read(path(.certificate)),
            let keyBytes = try? SecureFile.read(pendingPath(.key)),
            let certificate = try? PEM.certificates(String(decoding: certificateBytes, as: UTF8.self)).first
        else { return false }
        do {
            return try AgentKeys.parse(String(decoding: keyBytes, as: UTF8.self)).key.publicKey == certificate.publicKey
        } catch {
            if error.code == .io { throw error }
            return false
        }
    }

    /// Step 4 of an install: rename the staged files into place, the key last.
    private func finishCommittedInstall() throws(AgentError) {
        for file in [File.trust, .chain, .identity, .key] where exists(pendingPath(file)) {
            guard rename(pendingPath(file), path(file)) == 0 else {
                throw AgentError(.io, "cannot rename \(pendingPath(file)): \(Self.systemReason())")
            }
        }
        try syncDirectory()
    }

    private func write(_ bytes: [UInt8], to target: String, mode: mode_t) throws(AgentError) {
        do {
            try SecureFile.write(bytes, to: target, mode: mode)
        } catch {
            throw AgentError(.io, error.reason)
        }
    }

    private func readText(_ file: String) throws(AgentError) -> String? {
        do {
            return String(decoding: try SecureFile.read(file), as: UTF8.self)
        } catch  where error.code == .notFound {
            return nil
        } catch {
            throw AgentError(.io, error.reason)
        }
    }

    /// True if `file` exists, without following a symbolic link (attributes are read with lstat).
    private func exists(_ file: String) -> Bool {
        (try? FileManager.default.attributesOfItem(atPath: file)) != nil
    }

    /// `SecureFile` writes `.<name>.<random>.tmp` and renames it; a crash can leave one behind.
    private func removeOrphanedTemporaries() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
        let names = Set(File.allCases.flatMap { [$0.rawValue, "\($0.rawValue).next"] })
        for entry in entries where entry.hasPrefix(".") && entry.hasSuffix(".tmp") {
            let stem = entry.dropFirst().dropLast(".tmp".count)
            guard let dot = stem.lastIndex(of: "."), names.contains(String(stem[..<dot])) else { continue }
            unlink("\(path)/\(entry)")
        }
    }

    private func syncDirectory() throws(AgentError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError(.io, "cannot open \(path): \(Self.systemReason())") }
        defer { close(fd) }
        guard fsync(fd) == 0 || errno == EINVAL else {
            throw AgentError(.io, "cannot flush \(path): \(Self.systemReason())")
        }
    }

    private static func systemReason() -> String {
        String(cString: strerror(errno))
    }
}
