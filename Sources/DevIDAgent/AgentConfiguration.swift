import DevIDPKI
public import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What `devid agent run` needs besides the identity: `agent.json` in the state directory, written at enrollment so
/// that `devid agent run --state-dir DIR` needs nothing else (flags may override each field).
///
/// ```json
/// {
///   "serverURL" : "https://devid.example:8443",
///   "label" : "acme",
///   "idevidCertificate" : "/etc/devid/idevid-chain.pem",
///   "idevidKey" : "/etc/devid/idevid.key",
///   "onRotate" : "systemctl reload mosquitto",
///   "checkInInterval" : 3600
/// }
/// ```
///
/// The IDevID paths point at the factory identity (never copied: it may live on read-only or protected storage); the
/// agent bootstraps with it when the LDevID is beyond repair (expired beyond grace, revoked, lost). Without them such
/// a device needs a new claim token.
public struct AgentConfiguration: Codable, Sendable, Hashable {
    /// The EST base URL.
    public var serverURL: String
    /// The EST label (`/.well-known/est/<label>/`).
    public var label: String?
    /// Absolute path of the IDevID certificate PEM (may hold the chain, leaf first).
    public var idevidCertificate: String?
    /// Absolute path of the IDevID private key PEM.
    public var idevidKey: String?
    /// The reload hook, run with `/bin/sh -c` after every new identity is installed.
    public var onRotate: String?
    /// Seconds between check-ins while nothing is due (default ``RotationAgent/Configuration/defaultCheckInInterval``).
    public var checkInInterval: TimeInterval?
    /// A PKCS#11 token URI (module-path, pin-source): new LDevID keys are generated inside that token.
    public var keyURI: String?

    public init(
        serverURL: String, label: String? = nil, idevidCertificate: String? = nil, idevidKey: String? = nil,
        onRotate: String? = nil, checkInInterval: TimeInterval? = nil
    ) {
        self.serverURL = serverURL
        self.label = label
        self.idevidCertificate = idevidCertificate
        self.idevidKey = idevidKey
        self.onRotate = onRotate
        self.checkInInterval = checkInInterval
    }

    /// The file name in the state directory.
    public static let fileName = "agent.json"

    /// Reads `DIR/agent.json`; nil if there is none.
    public static func load(stateDirectory: String) throws(AgentError) -> AgentConfiguration? {
        let path = AgentStateDirectory(path: stateDirectory).path + "/" + fileName
        guard let bytes = try AgentFileIO.readIfPresent(path) else { return nil }
        do {
            return try JSONDecoder().decode(AgentConfiguration.self, from: Data(bytes))
        } catch {
            throw AgentError(.invalidState, "\(path) does not parse")
        }
    }

    /// Writes `DIR/agent.json` atomically (mode 0644; it holds paths, never secrets).
    public func save(stateDirectory: String) throws(AgentError) {
        let directory = AgentStateDirectory(path: stateDirectory)
        try directory.create()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes: [UInt8]
        do {
            bytes = Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
        } catch {
            throw AgentError(.invalidState, "agent configuration could not be encoded")
        }
        try AgentFileIO.write(bytes, to: directory.path + "/" + Self.fileName, mode: 0o644)
    }
}

/// Small file helpers with ``AgentError``s.
enum AgentFileIO {
    static func readIfPresent(_ path: String) throws(AgentError) -> [UInt8]? {
        do {
            return try SecureFile.read(path)
        } catch where error.code == .notFound {
            return nil
        } catch {
            throw AgentError(.io, error.reason)
        }
    }

    static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws(AgentError) {
        do {
            try SecureFile.write(bytes, to: path, mode: mode)
        } catch {
            throw AgentError(.io, error.reason)
        }
    }
}
