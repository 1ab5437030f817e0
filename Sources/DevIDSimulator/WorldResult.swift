import Foundation

/// What one compared world (`before` or `devid`) produced: totals for `summary.json` and daily series for the CSV
/// and the charts. Built by one world, read by the report.
struct WorldResult {
    /// The days of the run: every daily series has this many entries.
    let days: Int
    /// Failed authentications by reason, per day (fractions while accruing, rounded in the summary).
    var authFailures: [String: [Double]] = [:]
    var enrollments: [Double]
    var renewals: [Double]
    var bootstraps: [Double]
    var reprovisions: [Double]
    /// Certificates whose notAfter falls on each day.
    var expiring: [Double]
    /// Seconds from installation to the first operational identity, for devices installed during the run.
    var onboardingSeconds: [Double] = []
    /// Devices that lost service in answer to each compromise event, by event name.
    var blastRadius: [String: Int] = [:]
    var devicesOfflineBeyondGrace = 0
    var bootstrapRecoveries = 0
    var lateRenewals = 0
    var powerLossRecoveries = 0
    var clockCorrections = 0
    /// Devices still without a working identity at the end, by why.
    var stranded: [String: Int] = [:]
    /// Issuances by second, to find the busiest one.
    var enrollmentsBySecond: [Int64: Int] = [:]
    var decisions = 0
    var decisionsBySecond: [Int64: Int] = [:]
    /// Anomaly-check findings, summed over the weekly health snapshots, by check.
    var anomalies: [String: Int] = [:]
    /// Extra facts for the summary (for example the audit chain's length after the run).
    var notes: [String: Int] = [:]

    init(days: Int) {
        self.days = days
        enrollments = Array(repeating: 0, count: days)
        renewals = Array(repeating: 0, count: days)
        bootstraps = Array(repeating: 0, count: days)
        reprovisions = Array(repeating: 0, count: days)
        expiring = Array(repeating: 0, count: days)
    }

    static func day(_ t: Double) -> Int { Int((t / 86_400).rounded(.down)) }

    /// Adds one to a daily series on the day of `t` (nothing outside the run).
    static func count(_ series: inout [Double], at t: Double, by amount: Double = 1) {
        let day = day(t)
        if day >= 0 && day < series.count { series[day] += amount }
    }

    /// Counts failed authentications at `perDay` tries a day over `[from, to)`, spread over the days it covers.
    mutating func accrueFailures(_ reason: String, from: Double, to: Double, perDay: Double) {
        guard to > from else { return }
        var series = authFailures[reason] ?? Array(repeating: 0, count: days)
        var t = max(0, from)
        let end = min(to, Double(days) * 86_400)
        while t < end {
            let dayEnd = (Double(Self.day(t)) + 1) * 86_400
            let stop = min(dayEnd, end)
            Self.count(&series, at: t, by: (stop - t) / 86_400 * perDay)
            t = stop
        }
        authFailures[reason] = series
    }

    mutating func noteEnrollment(at t: Double) {
        enrollmentsBySecond[Int64(t.rounded(.down)), default: 0] += 1
    }

    mutating func noteDecision(at t: Double) {
        decisions += 1
        decisionsBySecond[Int64(t.rounded(.down)), default: 0] += 1
    }

    var expiryAuthFailures: Int { Int((authFailures["expired"] ?? []).reduce(0, +).rounded()) }

    var authFailuresByReason: [String: Int] {
        authFailures.mapValues { Int($0.reduce(0, +).rounded()) }.filter { $0.value > 0 }
    }

    func percentile(_ p: Double) -> Double {
        guard !onboardingSeconds.isEmpty else { return 0 }
        let sorted = onboardingSeconds.sorted()
        let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
        return sorted[max(0, min(sorted.count - 1, rank))]
    }
}
