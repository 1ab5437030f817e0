public import DevIDCore
import DevIDPKI
public import Foundation
import X509

/// The state of the identity in a state directory at a given time: what `devid agent status` shows.
///
/// Reading never writes: an install interrupted after its commit point is read the way ``AgentStateDirectory``
/// resolves it (the staged key and identity belong to the new certificate).
///
/// Times are evaluated on the device clock corrected by the clock skew the agent last measured (`agent-state.json`),
/// the same estimate of the server's time the agent decides with.
public struct IdentityStatus: Codable, Sendable, Hashable {
    public enum State: String, Codable, Sendable, Hashable {
        /// The certificate is within its validity period.
        case valid
        /// The certificate's notAfter has passed.
        case expired
        /// The certificate's notBefore is still ahead (or the device clock is behind).
        case notYetValid = "not-yet-valid"
        /// There is no certificate in the directory.
        case missing
    }

    public var stateDirectory: String
    public var state: State
    /// The time the status was computed for.
    public var checkedAt: Date
    public var deviceID: DeviceID?
    public var tenant: TenantID?
    public var issuer: String?
    public var serial: SerialNumber?
    public var spiffeID: String?
    public var notBefore: Date?
    public var notAfter: Date?
    public var plannedRenewal: Date?
    /// True when `checkedAt` is at or after the planned renewal.
    public var renewalDue: Bool?
    /// Whether the private key in the directory belongs to the certificate (false if there is no key).
    public var keyMatchesCertificate: Bool?
    public var serverURL: String?
    public var enrolledAt: Date?
    /// The jittered renewal time the agent drew for this certificate (nil until `devid agent run` drew it).
    public var scheduledRenewal: Date?
    /// server − device clock in seconds, as last measured; nil if never measured.
    public var clockSkew: TimeInterval?
    /// Server time of the last successful check-in.
    public var lastCheckIn: Date?
    /// When the agent planned to run next (server time).
    public var nextWake: Date?
    /// Failed attempts in a row, and the last failure.
    public var failures: Int?
    public var lastError: String?
    /// The identity being rotated in (`next/`), if a rotation is under way.
    public var next: Slot?
    /// The identity rotated out (`previous/`), kept until the new one is confirmed.
    public var previous: Slot?

    /// A staged or kept identity beside the current one.
    public struct Slot: Codable, Sendable, Hashable {
        public enum State: String, Codable, Sendable, Hashable {
            /// Only a new key (rotation step a done).
            case keyStaged = "key-staged"
            /// A certificate and its key.
            case complete
            /// Leftovers without an identity (removed by the agent's next step).
            case incomplete
        }
        public var state: State
        public var serial: SerialNumber?
        public var notBefore: Date?
        public var notAfter: Date?
        public var keyMatchesCertificate: Bool?

        static func read(_ slot: IdentitySlot) -> Slot? {
            guard slot.exists else { return nil }
            let certificate = (try? slot.certificate()) ?? nil
            let key = (try? slot.stagedKey()) ?? nil
            guard let certificate else { return Slot(state: key == nil ? .incomplete : .keyStaged) }
            let matches = key.map { $0.key.publicKey == certificate.publicKey } ?? false
            return Slot(
                state: matches ? .complete : .incomplete, serial: certificate.devidSerial,
                notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter,
                keyMatchesCertificate: matches)
        }
    }

    /// Reads `stateDirectory` and evaluates it at `clock.now()`.
    ///
    /// - Throws: ``AgentError`` `.invalidState` when a file is there but unreadable as what it should be, `.io` when
    ///   a file cannot be read.
    public static func read(stateDirectory: String, clock: any WallClock) throws(AgentError) -> IdentityStatus {
        let directory = AgentStateDirectory(path: stateDirectory)
        let memory = (try? AgentMemory.load(directory)) ?? AgentMemory()
        let now = ServerClock(local: clock, known: memory.clockSkew).now()
        guard let certificate = try directory.certificate() else {
            var status = IdentityStatus(stateDirectory: directory.path, state: .missing, checkedAt: now)
            status.addAgentState(memory, directory: directory, certificate: nil)
            return status
        }
        let key = try directory.privateKey()
        let recorded = try directory.identity()
        // The certificate is the source of truth; identity.json adds what only the agent knows.
        let described = try? EnrolledIdentity(
            certificate: certificate, serverURL: recorded?.serverURL ?? "", bootstrap: recorded?.bootstrap ?? "",
            enrolledAt: recorded?.enrolledAt ?? now, serverDate: nil)
        let sameCertificate = recorded?.certificateSHA256 == certificate.sha256Fingerprint

        let state: State
        if now < certificate.notValidBefore {
            state = .notYetValid
        } else if now > certificate.notValidAfter {
            state = .expired
        } else {
            state = .valid
        }
        let plannedRenewal = EnrolledIdentity.plannedRenewal(
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter)
        var status = IdentityStatus(stateDirectory: directory.path, state: state, checkedAt: now)
        status.deviceID = described?.deviceID
        status.tenant = described?.tenant
        status.issuer = String(describing: certificate.issuer)
        status.serial = certificate.devidSerial
        status.spiffeID = described?.spiffeID
        status.notBefore = certificate.notValidBefore
        status.notAfter = certificate.notValidAfter
        status.plannedRenewal = plannedRenewal
        status.renewalDue = now >= plannedRenewal
        status.keyMatchesCertificate = key.map { $0.publicKey == certificate.publicKey } ?? false
        status.serverURL = sameCertificate ? recorded?.serverURL : nil
        status.enrolledAt = sameCertificate ? recorded?.enrolledAt : nil
        status.addAgentState(memory, directory: directory, certificate: certificate)
        return status
    }

    private mutating func addAgentState(
        _ memory: AgentMemory, directory: AgentStateDirectory, certificate: Certificate?
    ) {
        if let schedule = memory.schedule, schedule.certificateSHA256 == certificate?.sha256Fingerprint {
            scheduledRenewal = schedule.renewalAt
        }
        clockSkew = memory.clockSkew?.skew
        lastCheckIn = memory.lastCheckIn
        nextWake = memory.nextWake
        failures = memory.failures == 0 ? nil : memory.failures
        lastError = memory.lastError
        next = Slot.read(IdentitySlot(.next, in: directory))
        previous = Slot.read(IdentitySlot(.previous, in: directory))
    }

    init(stateDirectory: String, state: State, checkedAt: Date) {
        self.stateDirectory = stateDirectory
        self.state = state
        self.checkedAt = checkedAt
    }
}
