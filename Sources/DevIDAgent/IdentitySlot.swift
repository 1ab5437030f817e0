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

/// A staged or kept identity beside the current one: `DIR/next/` (being rotated in) or `DIR/previous/` (rotated out,
/// kept until the new one is confirmed).
///
/// A slot holds `key.pem` (0600), `cert.pem`, `chain.pem` and `identity.json`, like the current files. `cert.pem` is
/// its commit point: it is written **last**, and removed **first**, so a slot whose `cert.pem` exists holds a
/// complete identity, and one without it holds at most a staged key (``stagedKey()``), which is all that rotation
/// step (a) persists. Every file is written with `SecureFile.write` (temporary file, `fsync`, rename, directory
/// `fsync`).
public struct IdentitySlot: Sendable {
    public enum Name: String, Sendable, CaseIterable {
        case next
        case previous
    }

    public let name: Name
    public let path: String
    let stateDirectoryPath: String

    public init(_ name: Name, in stateDirectory: AgentStateDirectory) {
        self.name = name
        self.path = stateDirectory.path + "/" + name.rawValue
        self.stateDirectoryPath = stateDirectory.path
    }

    public func path(_ file: AgentStateDirectory.File) -> String { "\(path)/\(file.rawValue)" }

    /// True when the slot directory exists at all (possibly with leftovers only).
    public var exists: Bool {
        FileManager.default.fileExists(atPath: path)
    }

    /// The slot's certificate, or nil: the slot holds no complete identity.
    public func certificate() throws(AgentError) -> Certificate? {
        guard let text = try readText(.certificate) else { return nil }
        do {
            return try PEM.certificates(text)[0]
        } catch {
            throw AgentError(.invalidState, "\(path(.certificate)): \(error.reason)")
        }
    }

    /// The slot's private key and its PKCS#8 DER, or nil if there is none.
    public func stagedKey() throws(AgentError) -> (key: Certificate.PrivateKey, pkcs8: [UInt8])? {
        guard let text = try readText(.key) else { return nil }
        do {
            let parsed = try AgentKeys.parse(text)
            return (parsed.key, parsed.material)
        } catch {
            throw AgentError(error.code, "\(path(.key)): \(error.reason)")
        }
    }

    public func chain() throws(AgentError) -> [Certificate]? {
        guard let text = try readText(.chain) else { return nil }
        do {
            return try PEM.certificates(text)
        } catch {
            throw AgentError(.invalidState, "\(path(.chain)): \(error.reason)")
        }
    }

    public func identity() throws(AgentError) -> EnrolledIdentity? {
        guard let text = try readText(.identity) else { return nil }
        do {
            return try EnrolledIdentity.decoder.decode(EnrolledIdentity.self, from: Data(text.utf8))
        } catch {
            throw AgentError(.invalidState, "\(path(.identity)) does not parse")
        }
    }

    /// The complete identity in the slot: a certificate with its matching key, or nil.
    public func pair() throws(AgentError) -> (certificate: Certificate, key: Certificate.PrivateKey, pkcs8: [UInt8])? {
        guard let certificate = try certificate(), let staged = try AgentKeys.unlessUnavailable({ () throws(AgentError) in try stagedKey() }),
            staged.key.publicKey == certificate.publicKey
        else { return nil }
        return (certificate, staged.key, staged.pkcs8)
    }

    /// Rotation step (a): persists a new key as the slot's only content.
    func stageKey(pkcs8: [UInt8]) throws(AgentError) {
        try createDirectory()
        try AgentFileIO.write(Array(AgentKeys.document(pkcs8).utf8), to: path(.key), mode: 0o600)
    }

    /// Rotation step (b): the certificate issued for the staged key; `cert.pem` last (the commit point).
    func stageCertificate(_ certificate: Certificate, chain: [Certificate], identity: EnrolledIdentity)
        throws(AgentError)
    {
        try write(chain: chain, identity: identity)
        try AgentFileIO.write(Array(PEM.bundle([certificate]).utf8), to: path(.certificate), mode: 0o644)
    }

    /// Rotation step (c), first half: a copy of the current identity's files; `cert.pem` last.
    func saveCopy(of directory: AgentStateDirectory) throws(AgentError) {
        try createDirectory()
        for file in [AgentStateDirectory.File.key, .chain, .identity, .certificate] {
            guard let bytes = try AgentFileIO.readIfPresent(directory.effectivePath(file)) else {
                if file == .key || file == .certificate {
                    throw AgentError(.invalidState, "the current identity has no \(file.rawValue) to keep")
                }
                continue
            }
            try AgentFileIO.write(bytes, to: path(file), mode: file == .key ? 0o600 : 0o644)
        }
    }

    /// Deletes the slot: `cert.pem` first (from then on the slot holds no identity), then everything else.
    func remove() throws(AgentError) {
        guard exists else { return }
        // A key in a token is deleted once no file of the state directory names it (after the slot is gone).
        let tokenKey = AgentKeys.tokenMaterial(at: path(.key))
        defer { if let tokenKey { AgentKeys.destroyIfUnreferenced(tokenKey, in: AgentStateDirectory(path: stateDirectoryPath)) } }
        guard unlink(path(.certificate)) == 0 || errno == ENOENT else {
            throw AgentError(.io, "cannot remove \(path(.certificate)): \(String(cString: strerror(errno)))")
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for entry in entries {
            unlink("\(path)/\(entry)")
        }
        guard rmdir(path) == 0 || errno == ENOENT else {
            throw AgentError(.io, "cannot remove \(path): \(String(cString: strerror(errno)))")
        }
        syncParent()
    }

    // MARK: - Helpers

    private func write(chain: [Certificate], identity: EnrolledIdentity) throws(AgentError) {
        try createDirectory()
        let identityJSON: [UInt8]
        do {
            identityJSON = Array(try EnrolledIdentity.encoder.encode(identity)) + [UInt8(ascii: "\n")]
        } catch {
            throw AgentError(.invalidState, "identity could not be encoded")
        }
        try AgentFileIO.write(Array(PEM.bundle(chain).utf8), to: path(.chain), mode: 0o644)
        try AgentFileIO.write(identityJSON, to: path(.identity), mode: 0o644)
    }

    private func createDirectory() throws(AgentError) {
        do {
            try SecureFile.createDirectory(path, mode: 0o700)
        } catch {
            throw AgentError(.io, "cannot create \(path): \(error.reason)")
        }
        syncParent()
    }

    private func readText(_ file: AgentStateDirectory.File) throws(AgentError) -> String? {
        try AgentFileIO.readIfPresent(path(file)).map { String(decoding: $0, as: UTF8.self) }
    }

    private func syncParent() {
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        let fd = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
