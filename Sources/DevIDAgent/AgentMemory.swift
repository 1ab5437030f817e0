public import DevIDCore
public import Foundation

/// What the agent remembers between runs: `DIR/agent-state.json` (mode 0644; no secrets).
///
/// Written atomically after every change, so a restart continues where the last run stopped: the clock skew last
/// measured, the renewal time drawn for the current certificate (jitter is drawn once per certificate, so restarts do
/// not re-roll it), the backoff attempt, and whether the reload hook is still due.
public struct AgentMemory: Codable, Sendable, Hashable {
    /// The jittered renewal time drawn for one certificate.
    public struct Schedule: Codable, Sendable, Hashable {
        /// SHA-256 of the certificate it was drawn for.
        public var certificateSHA256: String
        /// When to renew, in server time.
        public var renewalAt: Date
        /// The policy fractions it was drawn with; a changed policy draws again.
        public var renewalFraction: Double
        public var jitterFraction: Double

        public init(certificateSHA256: String, renewalAt: Date, renewalFraction: Double, jitterFraction: Double) {
            self.certificateSHA256 = certificateSHA256
            self.renewalAt = renewalAt
            self.renewalFraction = renewalFraction
            self.jitterFraction = jitterFraction
        }
    }

    /// When the server asked this certificate to rotate now (a campaign, a tainted issuing CA): the moment drawn
    /// within the agent's rotate-now jitter, so a fleet told at once does not renew in the same second.
    public struct RotateNow: Codable, Sendable, Hashable {
        public var certificateSHA256: String
        /// Server time.
        public var at: Date

        public init(certificateSHA256: String, at: Date) {
            self.certificateSHA256 = certificateSHA256
            self.at = at
        }
    }

    public var rotateNow: RotateNow?
    /// The last clock-skew measurement.
    public var clockSkew: ServerClock.Sample?
    /// The rotation policy the server last announced.
    public var policy: RotationPolicy?
    public var schedule: Schedule?
    /// Failed attempts in a row (the backoff exponent).
    public var failures: Int = 0
    /// The last failure, one line.
    public var lastError: String?
    /// Server time of the last successful check-in.
    public var lastCheckIn: Date?
    /// Server time the agent planned to wake next.
    public var nextWake: Date?
    /// A new identity was installed and the reload hook has not run for it yet (set before the install, cleared
    /// when step d is done).
    public var reloadPending: Bool = false

    public init() {}

    public static let fileName = "agent-state.json"

    static func path(_ directory: AgentStateDirectory) -> String { directory.path + "/" + fileName }

    /// Reads `DIR/agent-state.json`; an empty memory if there is none. An unreadable file is an error, not a reset:
    /// the agent must not silently forget a persisted jitter or skew.
    public static func load(_ directory: AgentStateDirectory) throws(AgentError) -> AgentMemory {
        guard let bytes = try AgentFileIO.readIfPresent(path(directory)) else { return AgentMemory() }
        do {
            return try EnrolledIdentity.decoder.decode(AgentMemory.self, from: Data(bytes))
        } catch {
            throw AgentError(.invalidState, "\(path(directory)) does not parse")
        }
    }

    func save(_ directory: AgentStateDirectory) throws(AgentError) {
        let bytes: [UInt8]
        do {
            bytes = Array(try EnrolledIdentity.encoder.encode(self)) + [UInt8(ascii: "\n")]
        } catch {
            throw AgentError(.invalidState, "agent state could not be encoded")
        }
        try AgentFileIO.write(bytes, to: Self.path(directory), mode: 0o644)
    }
}
