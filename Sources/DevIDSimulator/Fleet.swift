import DevIDCore
import Foundation

/// The simulated fleet, drawn once from the scenario's seed and shared by every compared world: the same devices,
/// lots, installation times, away periods and regional outages under `before` and under `devid`.
///
/// Times are seconds since the scenario's start; negative for what happened before day 0.
struct Fleet {
    struct Lot {
        var index: Int
        var id: LotID
        var region: Int
        var madeAt: Double
        /// A lot without IDevIDs: its devices enroll with a bulk claim token bound to the lot.
        var usesToken: Bool
        /// Under `before`, the batch that shares one provisioning secret.
        var batch: Int
        var devices: Range<Int>
        /// Made before day 0: in the field already, and onboarded the old way before DevID arrives.
        var initial: Bool { madeAt < 0 }
    }

    struct Device {
        var id: DeviceID
        var hardwareSerial: String
        var lot: Int
        var region: Int
        var installAt: Double
        /// The device's own absences, sorted and disjoint: `[start, end)`.
        var away: [Interval]
        /// Seconds per day the device's clock runs fast (positive) or slow.
        var driftPerDay: Double
        /// When its real-time clock resets to 1970.
        var rtcResets: [Double]
    }

    struct Interval: Hashable {
        var start: Double
        var end: Double
    }

    let span: Double
    var lots: [Lot] = []
    var devices: [Device] = []
    var tenants: [TenantID] = []
    /// Each region's network outages, sorted and disjoint.
    var regionOutages: [[Interval]] = []

    init(_ scenario: Scenario) {
        span = Double(scenario.days) * 86_400
        var random = SimulationRandom(seed: scenario.seed, stream: 1)
        let day = 86_400.0
        tenants = scenario.regions.map { TenantID(rawValue: "tenant-\($0.name)") ?? TenantID(rawValue: "tenant")! }

        var madeAt: [Double] = (0..<scenario.lots.initial).map { -Double(scenario.lots.initial - $0) * 30 * day }
        var newLot = 0
        var arrival = Double(scenario.lots.everyDays)
        while arrival < Double(scenario.days) {
            madeAt.append(arrival * day)
            newLot += 1
            arrival += Double(scenario.lots.everyDays)
        }
        let shares = scenario.regions.map { max(0, $0.share) }
        let totalShare = shares.reduce(0, +)
        let perLot = scenario.devices / madeAt.count
        let extra = scenario.devices % madeAt.count
        var next = 0
        var newIndex = 0
        for (index, made) in madeAt.enumerated() {
            var pick = random.unit() * totalShare
            var region = shares.count - 1
            for (candidate, share) in shares.enumerated() where share > 0 {
                if pick < share { region = candidate; break }
                pick -= share
            }
            var usesToken = false
            if made >= 0 {
                newIndex += 1
                usesToken = scenario.lots.tokenLotEvery > 0 && newIndex % scenario.lots.tokenLotEvery == 0
            }
            let count = perLot + (index < extra ? 1 : 0)
            lots.append(
                Lot(
                    index: index, id: LotID(rawValue: String(format: "lot-%03d", index + 1))!, region: region,
                    madeAt: made, usesToken: usesToken, batch: index / scenario.lots.lotsPerBatch,
                    devices: next..<(next + count)))
            next += count
        }

        var deviceRandom = SimulationRandom(seed: scenario.seed, stream: 2)
        let offline = scenario.offline
        devices.reserveCapacity(scenario.devices)
        for lot in lots {
            for index in lot.devices {
                let install = lot.madeAt + deviceRandom.unit() * scenario.lots.installDays * day
                var away: [Interval] = []
                let from = max(0, install)
                for start in deviceRandom.poisson(perYear: offline.perYear, span: span) where start > from {
                    let days = min(offline.maximumDays, deviceRandom.logNormal(median: offline.medianDays, p90: offline.p90Days))
                    let interval = Interval(start: start, end: start + max(60, days * day))
                    if let last = away.last, last.end >= interval.start {
                        away[away.count - 1].end = max(last.end, interval.end)
                    } else {
                        away.append(interval)
                    }
                }
                let drift = deviceRandom.chance(scenario.clocks.driftShare)
                    ? (deviceRandom.unit() * 2 - 1) * scenario.clocks.maximumDriftSecondsPerDay : 0
                let resets = deviceRandom.poisson(perYear: scenario.clocks.rtcResetsPerYear, span: span)
                devices.append(
                    Device(
                        id: DeviceID(rawValue: String(format: "dev-%06d", index + 1))!,
                        hardwareSerial: String(format: "SN%08d", index + 1), lot: lot.index, region: lot.region,
                        installAt: install, away: away, driftPerDay: drift, rtcResets: resets))
            }
        }

        var outageRandom = SimulationRandom(seed: scenario.seed, stream: 3)
        for region in scenario.regions {
            var outages: [Interval] = []
            for start in outageRandom.poisson(perYear: region.outagesPerYear, span: span) {
                let end = start + max(60, outageRandom.exponential(mean: region.outageHours * 3_600))
                if let last = outages.last, last.end >= start {
                    outages[outages.count - 1].end = max(last.end, end)
                } else {
                    outages.append(Interval(start: start, end: end))
                }
            }
            regionOutages.append(outages)
        }
    }

    /// The interval of `intervals` (sorted, disjoint) that contains `t`, if any.
    private static func containing(_ t: Double, _ intervals: [Interval]) -> Interval? {
        var low = 0
        var high = intervals.count
        while low < high {
            let mid = (low + high) / 2
            if intervals[mid].end <= t { low = mid + 1 } else { high = mid }
        }
        guard low < intervals.count, intervals[low].start <= t else { return nil }
        return intervals[low]
    }

    /// Whether the device can reach the network at `t`: installed, not away, its region not in an outage.
    func isOnline(_ device: Int, at t: Double) -> Bool {
        nextOnline(device, from: t) == t
    }

    /// The first moment at or after `t` at which the device is online.
    func nextOnline(_ device: Int, from t: Double) -> Double {
        let record = devices[device]
        var t = max(t, record.installAt)
        while true {
            if let away = Self.containing(t, record.away) {
                t = away.end
            } else if let outage = Self.containing(t, regionOutages[record.region]) {
                t = outage.end
            } else {
                return t
            }
        }
    }

    /// The last moment at or before `t` at which the device was online; nil if it never was.
    func lastOnline(_ device: Int, atOrBefore t: Double) -> Double? {
        let record = devices[device]
        var t = t
        while t >= record.installAt {
            if let away = Self.containing(t, record.away) {
                t = away.start - 1
            } else if let outage = Self.containing(t, regionOutages[record.region]) {
                t = outage.start - 1
            } else {
                return t
            }
        }
        return nil
    }

    /// The parts of `[from, to)` in which the device is online.
    func onlineSegments(_ device: Int, from: Double, to: Double) -> [Interval] {
        var segments: [Interval] = []
        var t = from
        while t < to {
            let start = nextOnline(device, from: t)
            guard start < to else { break }
            // Online from `start` until the next absence or outage begins.
            let record = devices[device]
            var end = to
            if let away = record.away.first(where: { $0.start > start }) { end = min(end, away.start) }
            if let outage = regionOutages[record.region].first(where: { $0.start > start }) { end = min(end, outage.start) }
            segments.append(Interval(start: start, end: end))
            t = end
        }
        return segments
    }
}
