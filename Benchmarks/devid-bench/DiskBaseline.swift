import DevIDPKI
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file work `LotMinter` does per device without the crypto: one directory and three small files, each
/// written through `SecureFile` (temporary file, fsync, rename, fsync of the directory).
struct FileWriteBaseline: Codable, Sendable {
    var devicesPerSecond: Double
    var microsecondsPerDevice: Double
    var measuredDevices: Int

    static func measure(in path: String, seconds: Double) throws -> FileWriteBaseline {
        try SecureFile.createDirectory(path)
        let key = [UInt8](repeating: 0x41, count: 241)
        let certificate = [UInt8](repeating: 0x42, count: 750)
        let chain = [UInt8](repeating: 0x43, count: 1_400)
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        var elapsed = 0.0
        repeat {
            let directory = path + "/device-\(count)"
            try SecureFile.createDirectory(directory)
            try SecureFile.write(key, to: directory + "/idevid.key", mode: 0o600)
            try SecureFile.write(certificate, to: directory + "/idevid.crt", mode: 0o644)
            try SecureFile.write(chain, to: directory + "/chain.pem", mode: 0o644)
            count += 1
            elapsed = (clock.now - start).seconds
        } while elapsed < seconds && count < 100_000
        return FileWriteBaseline(
            devicesPerSecond: Double(count) / elapsed, microsecondsPerDevice: elapsed * 1e6 / Double(count),
            measuredDevices: count)
    }
}

/// How fast this disk makes a small append durable: `write` 4 KiB then `fsync`, the shape of one SQLite WAL commit
/// under `synchronous=FULL`. DevID's registry does not pay this per commit today (GRDB's `DatabasePool` sets
/// `synchronous=NORMAL` in WAL mode, which syncs only at checkpoints); the rate shows what a durable commit per
/// enrollment would cost, since commits to one SQLite database are serialized.
struct FsyncBaseline: Codable, Sendable {
    var fsyncsPerSecond: Double
    var microsecondsPerFsync: Double
    var measuredFsyncs: Int

    static func measure(in directory: String, seconds: Double) throws -> FsyncBaseline {
        let path = directory + "/fsync-baseline"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw BenchError("cannot create \(path)") }
        defer {
            close(fd)
            unlink(path)
        }
        let page = [UInt8](repeating: 0x5A, count: 4_096)
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        var elapsed = 0.0
        repeat {
            let written = page.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == page.count, fsync(fd) == 0 else { throw BenchError("write or fsync failed") }
            count += 1
            elapsed = (clock.now - start).seconds
        } while elapsed < seconds && count < 100_000
        return FsyncBaseline(
            fsyncsPerSecond: Double(count) / elapsed, microsecondsPerFsync: elapsed * 1e6 / Double(count),
            measuredFsyncs: count)
    }
}
