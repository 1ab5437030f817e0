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

extension LotManifest {
    private enum CodingKeys: String, CodingKey {
        case lot, tenant, manufacturerCASHA256, createdAt, devices
    }

    /// `createdAt` is kept to the whole second, as DevID writes it (ISO 8601 without a fraction). The ISO 8601 reader
    /// also takes a fraction (even `10:00:0.1`), which the next encoding would silently drop: the fuzzer found a
    /// manifest that changed in a round trip (`Fuzz/Corpus/lot-manifest/fractional-seconds.json`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lot = try container.decode(LotID.self, forKey: .lot)
        tenant = try container.decode(TenantID.self, forKey: .tenant)
        manufacturerCASHA256 = try container.decode(String.self, forKey: .manufacturerCASHA256)
        let created = try container.decode(Date.self, forKey: .createdAt)
        createdAt = Date(timeIntervalSince1970: created.timeIntervalSince1970.rounded(.down))
        devices = try container.decode([Entry].self, forKey: .devices)
    }
}
