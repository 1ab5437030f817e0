import Crypto
import Foundation

/// Single-core rates of the public-key primitives that enrollment and minting are made of, measured with
/// swift-crypto (BoringSSL, the same code NIOSSL and swift-certificates end up in). The "× cores" column is an
/// upper bound that assumes perfect scaling; nothing measures it.
struct CryptoBaseline: Codable, Sendable {
    struct Operation: Codable, Sendable {
        var name: String
        var opsPerSecondOneCore: Double
        var opsPerSecondAllCores: Double
        var microsecondsPerOp: Double
        var measuredOps: Int
    }

    var cores: Int
    var secondsPerOperation: Double
    var operations: [Operation]

    static let p256Sign = "P-256 ECDSA sign (SHA-256)"
    static let p256Verify = "P-256 ECDSA verify (SHA-256)"
    static let p384Verify = "P-384 ECDSA verify (SHA-384)"
    static let p256Keygen = "P-256 key generation"
    static let hybridExchange = "X25519MLKEM768 key exchange (both sides)"

    func operation(_ name: String) -> Operation {
        guard let operation = operations.first(where: { $0.name == name }) else {
            preconditionFailure("baseline \(name) was not measured")
        }
        return operation
    }

    /// Microseconds of one core per operation.
    func cost(_ name: String) -> Double { operation(name).microsecondsPerOp }

    /// Measures the operations named in `names` (all by default) for about `seconds` each.
    static func measure(seconds: Double, names: [String]? = nil) throws -> CryptoBaseline {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        // About the size of what a TLS 1.3 CertificateVerify signs (64 spaces, a context string, a hash).
        let message = Data((0..<130).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let p256 = P256.Signing.PrivateKey()
        let p256Signature = try p256.signature(for: message)
        let p384 = P384.Signing.PrivateKey()
        let p384Signature = try p384.signature(for: message)

        var all: [(String, () throws -> Void)] = [
            (p256Sign, { blackHole(try p256.signature(for: message).rawRepresentation.count) }),
            (
                p256Verify,
                {
                    guard p256.publicKey.isValidSignature(p256Signature, for: message) else {
                        throw BenchError("P-256 verify failed")
                    }
                }
            ),
            (
                p384Verify,
                {
                    guard p384.publicKey.isValidSignature(p384Signature, for: message) else {
                        throw BenchError("P-384 verify failed")
                    }
                }
            ),
            (p256Keygen, { blackHole(P256.Signing.PrivateKey().publicKey.rawRepresentation.count) }),
            (
                hybridExchange,
                {
                    // Client key share, server encapsulation and its X25519 share, client decapsulation.
                    let clientKEM = try MLKEM768.PrivateKey.generate()
                    let clientECDH = Curve25519.KeyAgreement.PrivateKey()
                    let encapsulation = try clientKEM.publicKey.encapsulate()
                    let serverECDH = Curve25519.KeyAgreement.PrivateKey()
                    let serverShared = try serverECDH.sharedSecretFromKeyAgreement(with: clientECDH.publicKey)
                    let clientKEMSecret = try clientKEM.decapsulate(encapsulation.encapsulated)
                    let clientShared = try clientECDH.sharedSecretFromKeyAgreement(with: serverECDH.publicKey)
                    guard clientShared == serverShared, clientKEMSecret == encapsulation.sharedSecret else {
                        throw BenchError("key exchange secrets differ")
                    }
                }
            ),
        ]
        if let names { all = all.filter { names.contains($0.0) } }
        var operations: [Operation] = []
        for (name, body) in all {
            let (count, elapsed) = try time(seconds: seconds, body)
            let rate = Double(count) / elapsed
            operations.append(
                Operation(
                    name: name, opsPerSecondOneCore: rate, opsPerSecondAllCores: rate * Double(cores),
                    microsecondsPerOp: elapsed * 1e6 / Double(count), measuredOps: count))
        }
        return CryptoBaseline(cores: cores, secondsPerOperation: seconds, operations: operations)
    }

    /// Runs `body` in batches until `seconds` have passed (after a short warm-up); bounded in count too.
    private static func time(seconds: Double, _ body: () throws -> Void) throws -> (count: Int, seconds: Double) {
        for _ in 0..<16 { try body() }
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        var elapsed = 0.0
        repeat {
            for _ in 0..<16 { try body() }
            count += 16
            elapsed = (clock.now - start).seconds
        } while elapsed < seconds && count < 50_000_000
        return (count, elapsed)
    }

    func table() -> Table {
        var table = Table(title: "Crypto baseline (swift-crypto, one thread; × \(cores) cores is an upper bound)")
        for operation in operations {
            table.add(
                operation.name,
                "\(fixed(operation.opsPerSecondOneCore, 0)) ops/s (\(fixed(operation.microsecondsPerOp, 1)) µs); "
                    + "× \(cores) cores: \(fixed(operation.opsPerSecondAllCores, 0)) ops/s")
        }
        return table
    }
}

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}
