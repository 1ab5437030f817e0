import DevIDCore
import Foundation

/// What `storm run` prints: who was served and when, what back-pressure the devices met and how they retried, the
/// probes' latencies and the server's memory. `failures` lists broken promises (the command then exits 1).
struct StormReport: Codable, Sendable {
    var benchmark = "storm"
    var machine: MachineFacts
    var devices: Int
    var reenrollers: Int
    var checkedIn: Int
    var reenrolled: Int
    /// Checked in and, for re-enrollers, holding a new certificate for their new key.
    var served: Int
    var sources: Int
    var backoffBaseSeconds: Double
    var backoffCapSeconds: Double
    /// Loading the devices' TLS contexts, before the storm.
    var setupSeconds: Double
    /// From the storm's start until the last device was served (or gave up).
    var stormSeconds: Double
    var allServedAfterSeconds: Double?
    /// Per device, seconds from the start until it was served.
    var servedAfterP50Seconds: Double?
    var servedAfterP99Seconds: Double?
    var journal: StormJournal.Snapshot
    var probes: [StormProbe.Result]
    var memory: StormMemory?
    var failures: [String]

    init(
        machine: MachineFacts, devices: Int, reenrollers: Int, sources: Int, backoff: Backoff, setupSeconds: Double,
        stormSeconds: Double, outcomes: [StormRun.DeviceOutcome], journal: StormJournal.Snapshot,
        probes: [StormProbe.Result], memory: StormMemory?
    ) {
        self.machine = machine
        self.devices = devices
        self.reenrollers = reenrollers
        checkedIn = outcomes.filter(\.checkedIn).count
        reenrolled = outcomes.filter { $0.reenrolled == true }.count
        let times = outcomes.compactMap(\.servedAfter).sorted()
        served = times.count
        self.sources = sources
        backoffBaseSeconds = backoff.base
        backoffCapSeconds = backoff.cap
        self.setupSeconds = setupSeconds
        self.stormSeconds = stormSeconds
        allServedAfterSeconds = times.count == devices ? times.last : nil
        func percentile(_ p: Double) -> Double? {
            times.isEmpty ? nil : times[min(times.count - 1, Int((Double(times.count) * p / 100).rounded(.up)) - 1)]
        }
        servedAfterP50Seconds = percentile(50)
        servedAfterP99Seconds = percentile(99)
        self.journal = journal
        self.probes = probes
        self.memory = memory
        var failures: [String] = []
        if served != devices { failures.append("\(devices - served) of \(devices) devices were not served") }
        if journal.retriesEarly > 0 {
            failures.append("\(journal.retriesEarly) retries were sent before their Retry-After had passed")
        }
        if journal.backPressure != journal.backPressureWithRetryAfter {
            failures.append(
                "\(journal.backPressure - journal.backPressureWithRetryAfter) 429/503 answers had no Retry-After")
        }
        self.failures = failures
    }

    func render() -> String {
        var setup = Table(title: "devid-bench storm")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "devices",
            "\(devices) check in at once, \(reenrollers) then re-enroll; "
                + (sources > 0 ? "from \(sources) loopback addresses" : "from one address"))
        setup.add(
            "retries", "the agent's: Retry-After + up to 1/5 of it, or backoff (base \(fixed(backoffBaseSeconds, 1)) s, "
                + "cap \(fixed(backoffCapSeconds, 0)) s)")
        setup.add("setup", "\(fixed(setupSeconds, 1)) s loading TLS contexts (not in the numbers)")

        var results = Table(title: "Devices (\(failures.isEmpty ? "checks passed" : "FAILED"))")
        results.add("served", "\(served) of \(devices) (\(checkedIn) checked in, \(reenrolled) re-enrolled)")
        results.add(
            "all served after",
            allServedAfterSeconds.map { "\(fixed($0, 1)) s" } ?? "not all served in \(fixed(stormSeconds, 0)) s")
        if let p50 = servedAfterP50Seconds, let p99 = servedAfterP99Seconds {
            results.add("served after (p50, p99)", "\(fixed(p50, 2)) s, \(fixed(p99, 2)) s")
        }
        results.add("requests sent", String(journal.attempts))
        let statuses = journal.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        results.add("responses", statuses.joined(separator: ", "))
        let codes = journal.refusalCodes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        if !codes.isEmpty { results.add("DevID-Refusal", codes.joined(separator: ", ")) }
        let waits = journal.retryAfterSeconds.sorted { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }
            .map { "\($0.key) s: \($0.value)" }
        results.add(
            "429/503 with Retry-After",
            "\(journal.backPressureWithRetryAfter) of \(journal.backPressure)"
                + (waits.isEmpty ? "" : " (" + waits.joined(separator: ", ") + ")"))
        results.add(
            "retries after Retry-After",
            "\(journal.retriesAfterRetryAfter), \(journal.retriesEarly) early"
                + (journal.minimumRetrySlackSeconds.map { "; least slack \(fixed($0, 3)) s" } ?? ""))
        results.add("transport errors", String(journal.transportErrors))
        for error in journal.firstTransportErrors.prefix(3) { results.add("  e.g.", String(error.prefix(100))) }
        for failure in failures { results.add("FAILED", failure) }

        var probeTable = Table(title: "Probes of the operations listener during the storm (new connection each)")
        for probe in probes {
            let l = probe.latency
            probeTable.add(
                probe.name,
                "\(l.count) probes, p50 \(fixed(l.p50Ms, 1)) ms, p99 \(fixed(l.p99Ms, 1)) ms, max \(fixed(l.maxMs, 1)) ms"
                    + (probe.errors > 0 ? ", \(probe.errors) failed" : ""))
        }

        var sections = [setup.render(), results.render(), probeTable.render()]
        if let memory {
            var table = Table(title: "Server memory (/proc/PID/status)")
            table.add("VmRSS before the storm", "\(fixed(memory.rssAtStartMiB, 1)) MiB")
            table.add("VmRSS largest sampled", "\(fixed(memory.rssMaxMiB, 1)) MiB")
            table.add("VmRSS after the storm", "\(fixed(memory.rssAtEndMiB, 1)) MiB")
            table.add("VmHWM (peak since start)", "\(fixed(memory.peakMiB, 1)) MiB")
            sections.append(table.render())
        }
        return sections.joined(separator: "\n")
    }
}
