import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A directory under the system temp dir, removed by `remove()`.
struct BenchDirectory: Sendable {
    let path: String

    init(prefix: String) throws {
        path = FileManager.default.temporaryDirectory.path + "/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Progress lines go to stderr so that `--json` keeps stdout to one document.
func progress(_ line: String) {
    FileHandle.standardError.write(Data(("devid-bench: " + line + "\n").utf8))
}

/// What the numbers were measured on.
struct MachineFacts: Codable, Sendable {
    var cores: Int
    var cpuModel: String
    var date: String
    var build: String
    var loadAverageAtStart: String

    static func current() -> MachineFacts {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        #if DEBUG
        let build = "debug (numbers are not representative: use -c release)"
        #else
        let build = "release"
        #endif
        return MachineFacts(
            cores: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model,
            date: ISO8601DateFormatter().string(from: Date()), build: build, loadAverageAtStart: load)
    }
}

/// User plus system CPU time of this whole process (server, client and benchmark alike), in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Percentiles of a histogram recorded in microseconds, reported in milliseconds.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var minMs: Double
    var meanMs: Double
    var p50Ms: Double
    var p90Ms: Double
    var p99Ms: Double
    var p999Ms: Double
    var maxMs: Double

    init(microseconds histogram: Histogram<UInt64>) {
        func ms(_ value: UInt64) -> Double { Double(value) / 1_000 }
        count = histogram.totalCount
        minMs = ms(histogram.min)
        meanMs = histogram.mean / 1_000
        p50Ms = ms(histogram.valueAtPercentile(50))
        p90Ms = ms(histogram.valueAtPercentile(90))
        p99Ms = ms(histogram.valueAtPercentile(99))
        p999Ms = ms(histogram.valueAtPercentile(99.9))
        maxMs = ms(histogram.max)
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var microseconds: UInt64 { UInt64(max(0, (seconds * 1e6).rounded())) }
}

/// A two-column table with a title, for the human-readable report.
struct Table {
    var title: String
    var rows: [(String, String)] = []

    mutating func add(_ label: String, _ value: String) { rows.append((label, value)) }

    func render() -> String {
        let width = rows.map(\.0.count).max() ?? 0
        var lines = [title, String(repeating: "-", count: title.count)]
        for (label, value) in rows {
            lines.append(label + String(repeating: " ", count: width - label.count) + "  " + value)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Fixed-point formatting without Foundation's locale-dependent `String(format:)`.
func fixed(_ value: Double, _ digits: Int = 1) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (abs(value) * scale).rounded()
    let whole = Int(rounded / scale)
    let fraction = Int(rounded - Double(whole) * scale)
    var text = String(whole)
    if digits > 0 {
        let fractionText = String(fraction)
        text += "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
    }
    return (value < 0 && rounded > 0 ? "-" : "") + text
}

func percent(_ fraction: Double) -> String { fixed(fraction * 100, 1) + "%" }

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// Runs `body`, failing with `BenchError` if it takes longer than `seconds`.
func withTimeout<T: Sendable>(
    seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw BenchError("\(what) took longer than \(Int(seconds)) s")
        }
        guard let first = try await group.next() else { throw BenchError("\(what) did not run") }
        group.cancelAll()
        return first
    }
}
