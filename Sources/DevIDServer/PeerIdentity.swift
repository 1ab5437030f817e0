public import DevIDCore
import DevIDPKI
import X509

/// Who a verified client certificate says the peer is.
public enum PeerIdentity: Sendable, Hashable {
    /// An operational identity DevID issued.
    case ldevid(device: DeviceID, tenant: TenantID, serial: SerialNumber)
    /// A factory identity from a trusted manufacturer CA; `ownManufacturer` when DevID's own manufacturer CA
    /// issued it (DevID then publishes its revocation status). `manufacturerSHA256` is the fingerprint of the trusted
    /// manufacturer CA the chain ends in, `certificateSHA256` the IDevID's own: what the registry binds devices to.
    case idevid(
        hardwareSerial: String, serial: SerialNumber, ownManufacturer: Bool, manufacturerSHA256: String,
        certificateSHA256: String)
    /// Chains to a trusted anchor but is shaped like neither.
    case unrecognized(serial: SerialNumber)

    /// Classifies a verified chain (leaf first) against the hierarchy.
    /// An LDevID must run through an issuing CA that is still trusted (`issuers`): one of a revoked CA is
    /// `unrecognized`, whatever a cached verdict said.
    static func classify(
        chain: [Certificate], hierarchy: CAHierarchy, issuers: IssuingAuthorities.Snapshot
    ) -> PeerIdentity? {
        guard let leaf = chain.first else { return nil }
        let serial = leaf.devidSerial
        if issuers.isLDevIDChain(chain),
            let (device, tenant) = DeviceNames.ldevidIdentity(of: leaf, trustDomain: hierarchy.trustDomain)
        {
            return .ldevid(device: device, tenant: tenant, serial: serial)
        }
        if let anchor = chain.last, hierarchy.trustedManufacturers.contains(anchor),
            let hardwareSerial = DeviceNames.hardwareSerial(of: leaf),
            DeviceNames.isValidHardwareSerial(hardwareSerial),
            !hardwareSerial.hasPrefix(ClaimTokens.hardwareSerialPrefix)
        {
            return .idevid(
                hardwareSerial: hardwareSerial, serial: serial,
                ownManufacturer: hierarchy.ownManufacturers.values.contains { anchor == $0.certificate },
                manufacturerSHA256: anchor.sha256Fingerprint, certificateSHA256: leaf.sha256Fingerprint)
        }
        return .unrecognized(serial: serial)
    }
}
