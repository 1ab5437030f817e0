public import Foundation

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014): small, fast and
/// the same on every platform, so one seed gives one simulation. Not for secrets: the simulator draws a fleet.
public struct SimulationRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// An independent stream for one purpose (the fleet, the timeline, one device), so adding draws to one purpose
    /// leaves the others unchanged.
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SimulationRandom(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
        state = mixer.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    public mutating func chance(_ probability: Double) -> Bool { unit() < probability }

    /// Exponential with the given mean.
    public mutating func exponential(mean: Double) -> Double { -mean * log(1 - unit()) }

    /// Standard normal (Box-Muller).
    public mutating func normal() -> Double {
        let u = max(unit(), 1e-300)
        return sqrt(-2 * log(u)) * cos(2 * .pi * unit())
    }

    /// Log-normal with the given median and 90th percentile.
    public mutating func logNormal(median: Double, p90: Double) -> Double {
        let sigma = p90 > median ? log(p90 / median) / 1.281_551_565_5 : 0
        return median * exp(sigma * normal())
    }

    /// The arrival times of a Poisson process with `perYear` events a year, in seconds within `[0, span)`.
    public mutating func poisson(perYear: Double, span: Double) -> [Double] {
        guard perYear > 0 else { return [] }
        var times: [Double] = []
        var t = exponential(mean: 365 * 86_400 / perYear)
        while t < span {
            times.append(t)
            t += exponential(mean: 365 * 86_400 / perYear)
        }
        return times
    }

    /// 16 bytes for a certificate serial, positive as the real generator makes them.
    public mutating func serialBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for _ in 0..<2 { withUnsafeBytes(of: next().bigEndian) { bytes.append(contentsOf: $0) } }
        bytes[0] = (bytes[0] & 0x7F) | 0x01
        return bytes
    }
}
