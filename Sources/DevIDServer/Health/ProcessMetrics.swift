import Foundation
import DevIDCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The standard `process_*` families of Prometheus client libraries, read from `/proc/self` at scrape time (Linux
/// only; elsewhere none are written): CPU time, memory, open file descriptors and the start time.
enum ProcessMetrics {
    struct Sample: Equatable {
        var cpuSeconds: Double
        var residentBytes: Double
        var virtualBytes: Double
        var startTimeSeconds: Double
        var openFDs: Double
        var maxFDs: Double?
    }

    static func write(into text: inout PrometheusText) {
        guard let sample = read() else { return }
        text.family(
            "process_cpu_seconds_total", type: "counter", help: "Total user and system CPU time spent in seconds.")
        text.sample("process_cpu_seconds_total", [], sample.cpuSeconds)
        text.family("process_resident_memory_bytes", type: "gauge", help: "Resident memory size in bytes.")
        text.sample("process_resident_memory_bytes", [], sample.residentBytes)
        text.family("process_virtual_memory_bytes", type: "gauge", help: "Virtual memory size in bytes.")
        text.sample("process_virtual_memory_bytes", [], sample.virtualBytes)
        text.family(
            "process_start_time_seconds", type: "gauge",
            help: "Start time of the process since the Unix epoch in seconds.")
        text.sample("process_start_time_seconds", [], sample.startTimeSeconds)
        text.family("process_open_fds", type: "gauge", help: "Number of open file descriptors.")
        text.sample("process_open_fds", [], sample.openFDs)
        if let maxFDs = sample.maxFDs {
            text.family("process_max_fds", type: "gauge", help: "Maximum number of open file descriptors.")
            text.sample("process_max_fds", [], maxFDs)
        }
    }

    static func read() -> Sample? {
        #if os(Linux)
            guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
                let systemStat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8)
            else { return nil }
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
            guard let sample = parse(stat: stat, systemStat: systemStat, ticksPerSecond: ticks, pageSize: pageSize)
            else { return nil }
            var result = sample
            result.openFDs = Double(OpenDescriptors.count())
            var limit = rlimit()
            if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
                result.maxFDs = Double(limit.rlim_cur)
            }
            return result
        #else
            return nil
        #endif
    }

    /// `/proc/self/stat` (fields after the parenthesised command name: utime 14, stime 15, starttime 22, vsize 23,
    /// rss 24, counted from 1 as proc(5) does) and `btime` of `/proc/stat`.
    static func parse(stat: String, systemStat: String, ticksPerSecond: Double, pageSize: Double) -> Sample? {
        guard let close = stat.lastIndex(of: ")"), ticksPerSecond > 0 else { return nil }
        // Fields from 3 (state) on; index 0 here is field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
        guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23),
            let rss = field(24),
            let btimeLine = systemStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let bootTime = Double(btimeLine.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces))
        else { return nil }
        return Sample(
            cpuSeconds: (utime + stime) / ticksPerSecond, residentBytes: rss * pageSize, virtualBytes: vsize,
            startTimeSeconds: bootTime + start / ticksPerSecond, openFDs: 0, maxFDs: nil)
    }
}
