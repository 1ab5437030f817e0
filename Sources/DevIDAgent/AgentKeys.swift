import DevIDCore
public import DevIDPKCS11
import DevIDPKI
import Foundation
import SwiftASN1
public import X509

/// The agent's LDevID keys: P-256 keys in `key.pem` files (unencrypted PKCS#8, 0600), or, with `--key-uri`, keys
/// generated inside a PKCS#11 token (a secure element, a TPM through tpm2-pkcs11) that never leave it.
///
/// A token key is recorded in the same files, in the same crash-safe order, as its `pkcs11:` URI (one line, no
/// secret: the PIN comes from the URI's pin-source), so staging, promoting and keeping a previous identity work the
/// same for both. The "material" the agent passes around is the PKCS#8 DER of a file key or the URI's bytes.
///
/// A token key is deleted from the token only when no key file of the state directory names it any more: after a
/// rotation is confirmed (the previous identity is forgotten), never while a copy is kept.
public enum AgentKeys {
    /// A new key: in the token `tokenURI` names (labelled `devid-ldevid-<random>`), else in memory.
    public static func generate(in tokenURI: String?) throws(AgentError) -> (key: Certificate.PrivateKey, material: [UInt8]) {
        guard let tokenURI else {
            do {
                let generated = try KeyMaterial.generateWithDER(.p256)
                return (generated.key, generated.pkcs8)
            } catch {
                throw AgentError(.invalidState, "could not generate a key: \(error.reason)")
            }
        }
        do {
            let uri = try PKCS11URI(tokenURI)
            var random = SystemRandomNumberGenerator()
            let label = "devid-ldevid-" + String(random.next() as UInt64, radix: 16)
            let key = try PKCS11PrivateKey.generate(in: uri.tokenURI, label: label, curve: .p256)
            return (Certificate.PrivateKey(key), Array(key.uri.description.utf8))
        } catch {
            throw AgentError(.invalidArgument, "could not generate a key in the token: \(error.reason)")
        }
    }

    /// True for material (or a file's text) that names a token key.
    public static func isTokenKey(_ material: [UInt8]) -> Bool {
        material.starts(with: Array("pkcs11:".utf8))
    }

    /// The text of a key file for `material`.
    public static func document(_ material: [UInt8]) -> String {
        isTokenKey(material)
            ? String(decoding: material, as: UTF8.self) + "\n"
            : PEMDocument(type: "PRIVATE KEY", derBytes: material).pemString + "\n"
    }

    /// The key a key file's text holds (a PEM private key or a token key's URI), and its material.
    public static func parse(_ text: String) throws(AgentError) -> (key: Certificate.PrivateKey, material: [UInt8]) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if PKCS11URI.isURI(trimmed) {
            return (try open(trimmed), Array(trimmed.utf8))
        }
        do {
            let document = try PEMDocument(pemString: text)
            return (try KeyMaterial.privateKey(pkcs8: document.derBytes), document.derBytes)
        } catch {
            do {
                return (try KeyMaterial.privateKey(pem: text, passphrase: nil), [])
            } catch {
                throw AgentError(.invalidState, "not a PKCS#8 private key or a pkcs11: URI")
            }
        }
    }

    /// The token key `uri` names (also an IDevID key given as `--idevid-key pkcs11:...`).
    public static func open(_ uri: String) throws(AgentError) -> Certificate.PrivateKey {
        do {
            return Certificate.PrivateKey(try PKCS11PrivateKey.open(try PKCS11URI(uri)))
        } catch {
            // A key that is not there (or not usable) is invalid state; a token that cannot be used now (away, PIN
            // refused, module missing) is `.io`: callers wait and retry, and never discard the key's files for it.
            switch error.code {
            case .keyNotFound, .invalidURI, .mechanismUnsupported, .alreadyExists:
                throw AgentError(.invalidState, "the key in the token: \(error.reason)")
            default:
                throw AgentError(.io, "the key in the token is unavailable: \(error.reason)")
            }
        }
    }

    /// `body`'s key, nil when it is not a usable key; `.io` (a token unavailable now) is thrown, not taken for
    /// absence, so that a slot is never removed because its token was not ready.
    static func unlessUnavailable<T>(_ body: () throws(AgentError) -> T?) throws(AgentError) -> T? {
        do {
            return try body()
        } catch {
            if error.code == .io { throw error }
            return nil
        }
    }

    /// The key files of a state directory that may name a token key.
    static func keyFiles(_ directory: AgentStateDirectory) -> [String] {
        [
            directory.path(.key), directory.pendingPath(.key),
            IdentitySlot(.next, in: directory).path(.key), IdentitySlot(.previous, in: directory).path(.key),
        ]
    }

    /// Deletes the token key `material` names unless a key file of `directory` still names it. Never throws: a key
    /// left behind is reported, not fatal.
    static func destroyIfUnreferenced(_ material: [UInt8], in directory: AgentStateDirectory) {
        guard isTokenKey(material) else { return }
        let uri = String(decoding: material, as: UTF8.self)
        for file in keyFiles(directory) {
            if let bytes = FileManager.default.contents(atPath: file),
                String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == uri
            {
                return
            }
        }
        try? PKCS11PrivateKey.open(try PKCS11URI(uri)).destroy()
    }

    /// The material of the key file at `path`, if it names a token key.
    static func tokenMaterial(at path: String) -> [UInt8]? {
        guard let bytes = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return PKCS11URI.isURI(text) ? Array(text.utf8) : nil
    }
}
