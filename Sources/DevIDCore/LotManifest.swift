public import Foundation

/// What `devid factory mint` writes for a lot and `devid device import` registers: the allowlist.
public struct LotManifest: Sendable, Hashable, Codable {
    public struct Entry: Sendable, Hashable, Codable {
        public var deviceID: DeviceID
        public var hardwareSerial: String
        /// SHA-256 of the IDevID certificate DER, lowercase hex.
        public var idevidSHA256: String
        /// The IDevID's serial number, lowercase hex.
        public var idevidSerial: SerialNumber

        public init(deviceID: DeviceID, hardwareSerial: String, idevidSHA256: String, idevidSerial: SerialNumber) {
            self.deviceID = deviceID
            self.hardwareSerial = hardwareSerial
            self.idevidSHA256 = idevidSHA256
            self.idevidSerial = idevidSerial
        }
    }

    public var lot: LotID
    public var tenant: TenantID
    /// SHA-256 of the manufacturer CA certificate that signed these IDevIDs.
    public var manufacturerCASHA256: String
    public var createdAt: Date
    public var devices: [Entry]

    public init(lot: LotID, tenant: TenantID, manufacturerCASHA256: String, createdAt: Date, devices: [Entry]) {
        self.lot = lot
        self.tenant = tenant
        self.manufacturerCASHA256 = manufacturerCASHA256
        self.createdAt = createdAt
        self.devices = devices
    }
}
