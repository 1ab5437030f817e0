public import DevIDCore
public import DevIDPKI
public import Foundation
public import X509

/// A directory under the system temp dir, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "devid-test") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A directory made elsewhere (by the test command); `remove()` removes it too.
    public init(existing path: String) {
        self.path = path
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    public func write(_ name: String, _ text: String) throws -> String {
        let target = file(name)
        try text.write(toFile: target, atomically: true, encoding: .utf8)
        return target
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs a third-party program (openssl, curl) and captures its output.
public enum ExternalTool {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
        public var succeeded: Bool { status == 0 }
    }

    /// Runs `arguments[0]` found on PATH with the rest as arguments, started by ``SpawnedProcess`` (not Foundation's
    /// `Process`, whose launch can crash the test process at its descriptor peak). Blocks the calling thread.
    public static func run(_ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String]? = nil) throws
        -> Result
    {
        let out = Pipe.closeOnExec()
        let err = Pipe.closeOnExec()
        let input = Pipe.closeOnExec()
        let process = try SpawnedProcess(
            executable: "/usr/bin/env", arguments: arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 },
            stdin: input.fileHandleForReading.fileDescriptor, stdout: out.fileHandleForWriting.fileDescriptor,
            stderr: err.fileHandleForWriting.fileDescriptor)
        // The child's ends, closed here so its exit ends the reads below.
        try? input.fileHandleForReading.close()
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()
        if let stdin { input.fileHandleForWriting.write(Data(stdin)) }
        try? input.fileHandleForWriting.close()
        // Read before waiting so a full pipe cannot deadlock the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        let status = process.waitUntilExit()
        return Result(
            status: status, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs in a background thread so async tests do not block the cooperative pool.
    public static func runAsync(
        _ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String]? = nil
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result_.init(catching: {
                        try run(arguments, stdin: stdin, environment: environment)
                    }))
            }
        }
    }

    private typealias Result_ = Swift.Result<Result, any Error>
}

/// A complete CA hierarchy in a temporary data directory, made quickly (few PBKDF2 rounds) at a fixed time.
public struct TestChain: Sendable {
    public static let passphrase = Array("test-passphrase".utf8)

    public let directory: TemporaryDirectory
    public let layout: CALayout
    public let hierarchy: CAHierarchy
    public let clock: ManualWallClock

    public init(trustDomain: String = "test.devid", clock: ManualWallClock = ManualWallClock()) throws {
        directory = try TemporaryDirectory(prefix: "devid-chain")
        layout = CALayout(dataDirectory: directory.file("data"))
        self.clock = clock
        hierarchy = try CAStore.initialize(
            layout: layout,
            options: CAInitOptions(trustDomain: trustDomain, keyEncryptionRounds: 1_000),
            passphrase: Self.passphrase, now: clock.now()
        ).hierarchy
    }

    /// A fresh P-256 key and an LDevID for it.
    public func ldevid(device: String = "dev-1", tenant: String = "acme", at time: Date? = nil) throws -> (
        key: Certificate.PrivateKey, certificate: Certificate
    ) {
        let key = try KeyMaterial.generate(.p256)
        let cert = try hierarchy.issuing.issueLDevID(
            device: try DeviceID(device), tenant: try TenantID(tenant), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: time ?? clock.now())
        return (key, cert)
    }

    /// A fresh P-256 key and an IDevID for it from DevID's manufacturer CA.
    public func idevid(hardwareSerial: String = "SN-0001", at time: Date? = nil) throws -> (
        key: Certificate.PrivateKey, certificate: Certificate
    ) {
        guard let manufacturer = hierarchy.manufacturer else {
            throw DevIDPKIError(.notFound, "test chain has no manufacturer CA")
        }
        let key = try KeyMaterial.generate(.p256)
        let cert = try manufacturer.issueIDevID(
            hardwareSerial: hardwareSerial, publicKey: key.publicKey, now: time ?? clock.now())
        return (key, cert)
    }
}

extension Pipe {
    /// A pipe whose two descriptors close on exec: only the child that gets it as its standard input, output or
    /// error (a `dup2`, which clears the flag) holds it. A plain `Pipe()` is inherited by every process another test
    /// spawns at the same moment, and then the reader sees no end of file until that process exits: a clean-clone CI
    /// run had three `devid` commands that printed their output and exited wait 186 s (killed after their 60 s
    /// timeout) for a long-running process that held their pipes.
    public static func closeOnExec() -> Pipe {
        let pipe = Pipe()
        _ = fcntl(pipe.fileHandleForReading.fileDescriptor, F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipe.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
        return pipe
    }
}

/// A deterministic generator (SplitMix64): jitter, property tests and fault schedules repeat exactly from a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Counts this process's descriptors. Tests start children with ``SpawnedProcess``, never Foundation's `Process`:
/// swift-corelibs-foundation 6.3.1's `Process.run()` reads every `/proc/self/fd` entry with a 256-byte copy that
/// runs past glibc's 32 KiB `readdir` buffer once the process has more than about 1,360 open descriptors, and the test
/// process crashes with SIGSEGV (swiftlang/swift-corelibs-foundation#5472, fixed after 6.3).
public enum ProcessLaunch {
    /// Counted with `readdir` (``OpenDescriptors``): `FileManager.contentsOfDirectory` has the same 256-byte copy
    /// as `Process.run()` and crashed the test process with SIGSEGV while counting 1,356 entries (CI run on 35569e4).
    public static func openDescriptors() -> Int { OpenDescriptors.count() }
}
