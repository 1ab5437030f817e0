import DevIDCore
import DevIDServer
import Foundation

/// The fleet the old way, as the seed's case study describes it: one provisioning secret per batch of lots,
/// technicians onboarding each device by hand (a team of a given size, working hours, minutes per device),
/// one-year certificates that are never rotated, and a compromise answered by blocking the whole batch.
///
/// A model of a manual process: there is no DevID code to run here. The same fleet (devices, lots, installation
/// times, absences) as the `devid` world.
struct BeforeWorld {
    let scenario: Scenario
    let fleet: Fleet

    private enum Job {
        /// A new device waits for its first onboarding.
        case install(Int)
        /// An expired (or blocked) device waits to be provisioned again; `version` names the certificate it replaces.
        case reprovision(Int, version: Int, reason: String, brokenSince: Double)
    }

    func run() -> WorldResult {
        var result = WorldResult(days: scenario.days)
        var random = SimulationRandom(seed: scenario.seed, stream: 6)
        let before = scenario.before
        let work = before.technicianMinutesPerDevice * 60
        let lifetime = before.certificateDays * 86_400
        var technicians = Array(repeating: -Double.infinity, count: before.technicians)
        var version = Array(repeating: 0, count: fleet.devices.count)
        var notAfter = Array(repeating: Double.infinity, count: fleet.devices.count)
        /// Until when each device is known broken (so overlapping causes are not counted twice).
        var brokenUntil = Array(repeating: -Double.infinity, count: fleet.devices.count)
        var jobs = EventQueue<Job>()
        for device in fleet.devices.indices { jobs.schedule(.install(device), at: fleet.devices[device].installAt) }

        // Compromise: the batch's secret is replaced and every device of the batch provisioned again.
        var compromises: [(time: Double, name: String, devices: [Int])] = []
        func batch(of lot: Int) -> [Int] {
            fleet.lots.filter { $0.batch == fleet.lots[lot].batch }.flatMap { Array($0.devices) }
        }
        let events = scenario.events
        func time(_ day: Int?) -> Double? { day.flatMap { $0 < scenario.days ? Double($0) * 86_400 + 12 * 3_600 : nil } }
        if let t = time(events.deviceCompromiseDay) {
            let installed = fleet.devices.indices.filter { fleet.devices[$0].installAt < t }
            if !installed.isEmpty {
                let victim = installed[Int(random.next() % UInt64(installed.count))]
                compromises.append((t, "device_compromise", batch(of: fleet.devices[victim].lot)))
            }
        }
        if let t = time(events.idevidLeakDay) {
            compromises.append((t, "idevid_lot_leak", batch(of: min(events.idevidLeakLot, fleet.lots.count) - 1)))
        }
        if let t = time(events.tokenLeakDay), let lot = fleet.lots.last(where: { $0.usesToken && $0.madeAt <= t }) {
            compromises.append((t, "bulk_token_leak", batch(of: lot.index)))
        }
        if let t = time(events.caCompromiseDay) {
            compromises.append((t, "ca_compromise", Array(fleet.devices.indices)))
        }
        for compromise in compromises {
            let affected = compromise.devices.filter { fleet.devices[$0].installAt < compromise.time }
            result.blastRadius[compromise.name] = affected.count
            for device in affected {
                jobs.schedule(
                    .reprovision(device, version: -1, reason: "batch_blocked", brokenSince: compromise.time),
                    at: compromise.time)
            }
        }

        /// The first technician free, at the first working moment from `arrival` on that fits a whole job.
        func serve(arrival: Double) -> Double {
            let which = technicians.indices.min { technicians[$0] < technicians[$1] }!
            var start = max(arrival, technicians[which])
            let dayStart = (start / 86_400).rounded(.down) * 86_400 + 8 * 3_600
            let dayEnd = dayStart + before.workHoursPerDay * 3_600
            if start < dayStart {
                start = dayStart
            } else if start + work > dayEnd {
                start = dayStart + 86_400
            }
            technicians[which] = start + work
            return start + work
        }

        /// A technician gave the device a new one-year certificate: it expires, unnoticed for a while, and is queued.
        func provisioned(_ device: Int, at done: Double) {
            version[device] += 1
            notAfter[device] = done + lifetime
            WorldResult.count(&result.expiring, at: notAfter[device])
            jobs.schedule(
                .reprovision(device, version: version[device], reason: "expired", brokenSince: notAfter[device]),
                at: notAfter[device] + before.detectionDays * 86_400)
        }

        while let (arrival, job) = jobs.next() {
            guard arrival < fleet.span else { break }
            switch job {
            case .install(let device):
                let done = serve(arrival: arrival)
                if !fleet.lots[fleet.devices[device].lot].initial && done < fleet.span {
                    result.onboardingSeconds.append(done - arrival)
                    WorldResult.count(&result.enrollments, at: done)
                    result.noteEnrollment(at: done)
                }
                provisioned(device, at: done)
            case .reprovision(let device, let expected, let reason, let since):
                // A certificate that was replaced in the meantime no longer expires.
                if expected >= 0 && expected != version[device] { continue }
                let done = serve(arrival: arrival)
                let from = max(since, brokenUntil[device])
                for segment in fleet.onlineSegments(device, from: from, to: min(done, fleet.span)) {
                    result.accrueFailures(reason, from: segment.start, to: segment.end, perDay: scenario.reconnectsPerDay)
                }
                if reason == "expired" && !fleet.isOnline(device, at: since) { result.devicesOfflineBeyondGrace += 1 }
                brokenUntil[device] = max(brokenUntil[device], done)
                if done < fleet.span {
                    WorldResult.count(&result.reprovisions, at: done)
                    result.noteEnrollment(at: done)
                }
                provisioned(device, at: done)
            }
        }
        // Devices still broken at the end: their failures count up to the last day.
        var stranded = 0
        while let (_, job) = jobs.next() {
            guard case .reprovision(let device, let expected, let reason, let since) = job,
                expected < 0 || expected == version[device], since < fleet.span
            else { continue }
            stranded += 1
            let from = max(since, brokenUntil[device])
            for segment in fleet.onlineSegments(device, from: from, to: fleet.span) {
                result.accrueFailures(reason, from: segment.start, to: segment.end, perDay: scenario.reconnectsPerDay)
            }
            brokenUntil[device] = fleet.span
        }
        if stranded > 0 { result.stranded["awaiting_technician"] = stranded }
        result.anomalies = expiryWaveWeeks(notAfter: notAfter)
        return result
    }

    /// How many weekly snapshots DevID's `expiry_wave` check would have flagged on these certificates.
    private func expiryWaveWeeks(notAfter: [Double]) -> [String: Int] {
        var weeks = 0
        var day = 6
        while day < scenario.days {
            let now = (Double(day) + 1) * 86_400 - 1
            var byTenant: [TenantID: [Int]] = [:]
            for (index, expiry) in notAfter.enumerated() where expiry > now && fleet.devices[index].installAt <= now {
                let left = Int((expiry - now) / 86_400)
                guard left < 400 else { continue }
                let tenant = fleet.tenants[fleet.devices[index].region]
                if byTenant[tenant] == nil { byTenant[tenant] = Array(repeating: 0, count: 400) }
                byTenant[tenant]![left] += 1
            }
            var inputs = HealthInputs(now: scenario.start.addingTimeInterval(now), thresholds: HealthThresholds())
            inputs.expiryByDay = byTenant
            inputs.currentCredentials = byTenant.mapValues { $0.reduce(0, +) }
            inputs.ldevidLifetime = scenario.before.certificateDays * 86_400
            if !AnomalyChecks.run("expiry_wave", inputs).isEmpty { weeks += 1 }
            day += 7
        }
        return weeks > 0 ? ["expiry_wave": weeks] : [:]
    }
}
