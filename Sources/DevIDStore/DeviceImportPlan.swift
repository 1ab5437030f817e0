import DevIDCore
import Foundation

/// The decisions of a device import, shared by the backends so that they create, count and refuse alike.
///
/// A backend walks the manifest in order, looks up what it stores about each device, and hands both to
/// ``add(_:_:)``; the first refusal ends the import. At the end, ``lots`` and ``devices`` are what to insert
/// (lots first), with times already rounded to the stores' millisecond precision, and ``idevidBackfills`` the
/// registered devices that get their IDevID serial now (see ``IDevIDBackfill``).
struct DeviceImportPlan {
    /// The parts of a registered device that decide whether an imported one is the same, as stored text.
    struct Registered: Equatable {
        var tenant: String
        var hardwareSerial: String
        var lot: String?
        /// Compared only when both the registered and the imported device have one.
        var idevidSerial: String?

        static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.tenant == rhs.tenant && lhs.hardwareSerial == rhs.hardwareSerial && lhs.lot == rhs.lot
                && (lhs.idevidSerial == nil || rhs.idevidSerial == nil || lhs.idevidSerial == rhs.idevidSerial)
        }
    }

    /// What the store holds that bears on one device of the manifest.
    struct Stored {
        var tenantExists: Bool
        /// The tenant of the device's lot, if the device names a lot and the store has it.
        var lotTenant: TenantID?
        /// The registered device with the same id.
        var registered: Registered?
        /// Whether some registered device holds the same hardware serial.
        var hardwareSerialTaken: Bool
        /// Whether some registered device holds the device's IDevID serial (false when it has none).
        var idevidSerialTaken: Bool = false
    }

    /// A device registered before IDevID serials were (schema version 6), met again in a manifest that names its
    /// serial. The backend stores the serial, and when the device is `revoked` it revokes the IDevID at once: the
    /// revocation that moved the device there happened before its serial was known, and would otherwise never
    /// reach the manufacturer CRL. The time and reason are those of the device's newest credential revoked for a
    /// reason other than `superseded` (a rotation did not revoke the device), or the import's time and no reason
    /// (`unspecified`) when it has none. Only `revoked` devices: a `decommissioned` one cannot enroll whatever
    /// its IDevID's status, and the registry cannot tell whether its lot leaked before it was retired.
    struct IDevIDBackfill: Equatable {
        var device: DeviceID
        var serial: SerialNumber
    }

    private static let operation = "import devices"

    private let lotTime: Date
    private(set) var lots: [Lot] = []
    private(set) var devices: [Device] = []
    private(set) var idevidBackfills: [IDevIDBackfill] = []
    private var unchanged = 0
    /// The owner of every lot the import has met so far, stored or new.
    private var lotTenants: [LotID: TenantID] = [:]
    private var ids: Set<DeviceID> = []
    private var hardwareSerials: Set<String> = []
    private var idevidSerials: Set<SerialNumber> = []

    /// `time` becomes the creation time of the lots the import creates.
    init(time: Date) {
        self.lotTime = StoreTime.normalized(time)
    }

    var result: DeviceImportResult {
        DeviceImportResult(
            created: devices.count, unchanged: unchanged, lotsCreated: lots.count,
            idevidsRegistered: idevidBackfills.count)
    }

    /// Accepts the next device of the manifest or refuses the whole import. Reasons name the device's id only.
    mutating func add(_ device: Device, _ stored: Stored) throws(StoreError) {
        let name = device.id.rawValue
        guard stored.tenantExists else {
            throw StoreError(.notFound, "\(Self.operation): the tenant of device \(name) does not exist")
        }
        var newLot: Lot?
        if let lot = device.lot {
            if let owner = lotTenants[lot] ?? stored.lotTenant {
                guard owner == device.tenant else {
                    throw StoreError(
                        .conflict, "\(Self.operation): the lot of device \(name) belongs to another tenant")
                }
            } else {
                newLot = Lot(id: lot, tenant: device.tenant, createdAt: lotTime)
            }
        }
        guard !ids.contains(device.id) else {
            throw StoreError(.duplicate, "\(Self.operation): device \(name) appears more than once")
        }
        guard !hardwareSerials.contains(device.hardwareSerial) else {
            throw StoreError(
                .duplicate, "\(Self.operation): the hardware serial of device \(name) appears more than once")
        }
        if let serial = device.idevidSerial {
            guard !idevidSerials.contains(serial) else {
                throw StoreError(
                    .duplicate, "\(Self.operation): the IDevID serial of device \(name) appears more than once")
            }
        }
        let isUnchanged: Bool
        if let registered = stored.registered {
            guard registered == Registered(device) else {
                throw StoreError(
                    .duplicate,
                    "\(Self.operation): device \(name) is registered with another tenant, hardware serial, lot or IDevID")
            }
            if registered.idevidSerial == nil, let serial = device.idevidSerial {
                // The device holds no serial, so whoever holds this one is another device.
                guard !stored.idevidSerialTaken else {
                    throw StoreError(
                        .duplicate,
                        "\(Self.operation): the IDevID serial of device \(name) is registered to another device")
                }
                idevidBackfills.append(IDevIDBackfill(device: device.id, serial: serial))
            }
            isUnchanged = true
        } else {
            guard !stored.hardwareSerialTaken else {
                throw StoreError(
                    .duplicate,
                    "\(Self.operation): the hardware serial of device \(name) is registered to another device")
            }
            guard !stored.idevidSerialTaken else {
                throw StoreError(
                    .duplicate, "\(Self.operation): the IDevID serial of device \(name) is registered to another device")
            }
            isUnchanged = false
        }

        ids.insert(device.id)
        hardwareSerials.insert(device.hardwareSerial)
        if let serial = device.idevidSerial { idevidSerials.insert(serial) }
        if let lot = device.lot { lotTenants[lot] = device.tenant }
        if let newLot { lots.append(newLot) }
        if isUnchanged {
            unchanged += 1
        } else {
            var device = device
            device.createdAt = StoreTime.normalized(device.createdAt)
            device.lastSeen = StoreTime.normalized(device.lastSeen)
            devices.append(device)
        }
    }
}

extension DeviceImportPlan.Registered {
    init(_ device: Device) {
        self.init(
            tenant: device.tenant.rawValue, hardwareSerial: device.hardwareSerial, lot: device.lot?.rawValue,
            idevidSerial: device.idevidSerial?.rawValue)
    }
}
