import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One probe of the operations listener, run every `interval` on a new connection (as a monitoring system or an
/// operator's tool connects), timed from the TCP connect to the last byte of the response.
struct StormProbe: Sendable {
    var name: String
    var path: String
    var headers: [(String, String)] = []
    /// What a good answer is; anything else counts as a failed probe.
    var expectedStatus = 200

    struct Result: Codable, Sendable {
        var name: String
        var path: String
        var latency: LatencySummary
        var statuses: [String: Int]
        var errors: Int
        var firstErrors: [String]
    }

    /// Probes until `stop` is set; never throws (failures are counted).
    func run(host: String, port: Int, interval: Duration, stop: StormStopFlag) async -> Result {
        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        var statuses: [Int: Int] = [:]
        var errors = 0
        var firstErrors: [String] = []
        let clock = ContinuousClock()
        while !stop.isSet {
            let start = clock.now
            do {
                let reply = try await KeepAliveConnection.with(host: host, port: port) { connection in
                    try await connection.send(method: .GET, path: path, headers: headers)
                }
                histogram.record((clock.now - start).microseconds)
                statuses[reply.status, default: 0] += 1
                if reply.status != expectedStatus {
                    errors += 1
                    if firstErrors.count < 5 { firstErrors.append("HTTP \(reply.status)") }
                }
            } catch {
                histogram.record((clock.now - start).microseconds)
                errors += 1
                if firstErrors.count < 5 { firstErrors.append(String(describing: error)) }
            }
            try? await Task.sleep(until: start + interval)
        }
        return Result(
            name: name, path: path.count > 60 ? String(path.prefix(57)) + "..." : path,
            latency: LatencySummary(microseconds: histogram),
            statuses: Dictionary(uniqueKeysWithValues: statuses.map { (String($0.key), $0.value) }), errors: errors,
            firstErrors: firstErrors)
    }
}

final class StormStopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

/// The server's memory from `/proc/PID/status`, sampled while the storm runs.
struct StormMemory: Codable, Sendable {
    /// VmRSS when sampling started (after the restart, before the storm), in MiB.
    var rssAtStartMiB: Double
    /// The largest VmRSS sampled.
    var rssMaxMiB: Double
    /// VmRSS at the last sample (after the storm).
    var rssAtEndMiB: Double
    /// VmHWM (the kernel's peak RSS since the process started) at the last sample.
    var peakMiB: Double
    var samples: Int

    /// (VmRSS, VmHWM) in KiB, nil if the process is gone.
    static func read(pid: Int32) -> (rss: Double, hwm: Double)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Double? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first }
                .flatMap { Double($0) }
        }
        guard let rss = field("VmRSS"), let hwm = field("VmHWM") else { return nil }
        return (rss, hwm)
    }

    static func sample(pid: Int32, interval: Duration, stop: StormStopFlag) async -> StormMemory? {
        var first: Double?
        var maximum = 0.0
        var last: (rss: Double, hwm: Double)?
        var samples = 0
        while true {
            if let reading = read(pid: pid) {
                first = first ?? reading.rss
                maximum = max(maximum, reading.rss)
                last = reading
                samples += 1
            }
            if stop.isSet { break }
            try? await Task.sleep(for: interval)
        }
        guard let first, let last else { return nil }
        return StormMemory(
            rssAtStartMiB: first / 1_024, rssMaxMiB: maximum / 1_024, rssAtEndMiB: last.rss / 1_024,
            peakMiB: last.hwm / 1_024, samples: samples)
    }
}
