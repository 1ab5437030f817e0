import Crypto
@testable import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing

@Suite struct EncryptedPrivateKeyTests {
    /// Iterations for tests that do not check the default: enough to exercise PBKDF2, cheap enough to run often.
    let fastIterations = 1_000
    let secret = Array("correct horse battery staple".utf8)

    // MARK: Round trips

    @Test func roundTripP256PEM() throws {
        let key = P256.Signing.PrivateKey()
        let pkcs8 = Array(key.derRepresentation)
        let pem = try EncryptedPrivateKey.encryptPEM(
            privateKeyInfoDER: pkcs8,
            passphrase: secret,
            iterations: fastIterations
        )

        #expect(pem.hasPrefix("-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\n"))
        #expect(pem.hasSuffix("-----END ENCRYPTED PRIVATE KEY-----\n"))
        let decrypted = try EncryptedPrivateKey.decrypt(pem: pem, passphrase: secret)
        #expect(decrypted == pkcs8)
        let loaded = try P256.Signing.PrivateKey(derRepresentation: decrypted)
        #expect(loaded.publicKey.derRepresentation == key.publicKey.derRepresentation)
    }

    @Test func roundTripP384DER() throws {
        let key = P384.Signing.PrivateKey()
        let pkcs8 = Array(key.derRepresentation)
        let der = try EncryptedPrivateKey.encryptDER(
            privateKeyInfoDER: pkcs8,
            passphrase: secret,
            iterations: fastIterations
        )

        let decrypted = try EncryptedPrivateKey.decrypt(der: der, passphrase: secret)
        #expect(decrypted == pkcs8)
        let loaded = try P384.Signing.PrivateKey(derRepresentation: decrypted)
        #expect(loaded.publicKey.derRepresentation == key.publicKey.derRepresentation)
    }

    @Test func defaultsAreAES256CBCWithHMACSHA256AndFreshSaltAndIV() throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let first = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret)
        let second = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret)

        let info = try EncryptedPrivateKeyInfo(derEncoded: first)
        #expect(info.encryptionAlgorithm.algorithm == PBES2Parameters.oid)
        let parameters = try PBES2Parameters(asn1Any: try #require(info.encryptionAlgorithm.parameters))
        #expect(parameters.cipher == .aes256CBC)
        #expect(parameters.iv.count == 16)
        #expect(parameters.keyDerivation.prf == .hmacWithSHA256)
        #expect(parameters.keyDerivation.iterationCount == 100_000)
        #expect(parameters.keyDerivation.salt.count == 16)
        #expect(parameters.keyDerivation.keyLength == nil)

        let other = try PBES2Parameters(
            asn1Any: try #require(try EncryptedPrivateKeyInfo(derEncoded: second).encryptionAlgorithm.parameters)
        )
        #expect(parameters.keyDerivation.salt != other.keyDerivation.salt)
        #expect(parameters.iv != other.iv)
        #expect(first != second)
        #expect(try EncryptedPrivateKey.decrypt(der: second, passphrase: secret) == pkcs8)
    }

    // MARK: Wrong passphrase

    @Test(arguments: [Array("wrong".utf8), Array("correct horse battery stapl".utf8), []])
    func wrongPassphrase(_ passphrase: [UInt8]) throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let pem = try EncryptedPrivateKey.encryptPEM(
            privateKeyInfoDER: pkcs8,
            passphrase: secret,
            iterations: fastIterations
        )
        #expect(thrownCode { try EncryptedPrivateKey.decrypt(pem: pem, passphrase: passphrase) } == .wrongPassphrase)
    }

    /// A wrong passphrase is reported as such over many fresh keys, including when the padding happens to check out.
    @Test func wrongPassphraseIsAlwaysWrongPassphrase() throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let der = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret, iterations: 1)
        for attempt in 0..<300 {
            let code = thrownCode {
                try EncryptedPrivateKey.decrypt(der: der, passphrase: Array("guess \(attempt)".utf8))
            }
            #expect(code == .wrongPassphrase)
        }
    }

    // MARK: Encrypt refuses bad input

    @Test func encryptRefusesBadArguments() {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        #expect(
            thrownCode { try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: []) }
                == .policyViolation
        )
        for iterations in [0, -1, 10_000_001] {
            let code = thrownCode {
                try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret, iterations: iterations)
            }
            #expect(code == .policyViolation)
        }
        for notPKCS8 in [
            [], [0x30, 0x00], Array("PRIVATE KEY".utf8), Array(P256.Signing.PrivateKey().x963Representation),
        ] {
            let code = thrownCode {
                try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: notPKCS8, passphrase: secret, iterations: 1)
            }
            #expect(code == .malformed)
        }
    }

    // MARK: Garbage in

    @Test(arguments: BadDER.all)
    func garbageDERIsMalformed(_ input: BadDER) {
        #expect(thrownCode { try EncryptedPrivateKey.decrypt(der: input.bytes, passphrase: secret) } == .malformed)
    }

    @Test(arguments: BadPEM.all)
    func garbagePEMIsMalformed(_ input: BadPEM) {
        #expect(thrownCode { try EncryptedPrivateKey.decrypt(pem: input.text, passphrase: secret) } == .malformed)
    }

    /// Every strict prefix of a real file is refused as malformed, never decrypted and never a crash.
    @Test func everyTruncationIsMalformed() throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let der = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret, iterations: 1)
        for length in 0..<der.count {
            #expect(
                thrownCode { try EncryptedPrivateKey.decrypt(der: Array(der[..<length]), passphrase: secret) }
                    == .malformed
            )
        }
        let pem = PEMDocument(type: "ENCRYPTED PRIVATE KEY", derBytes: der).pemString
        for length in stride(from: 0, to: pem.utf8.count, by: 7) {
            let truncated = String(decoding: pem.utf8.prefix(length), as: UTF8.self)
            #expect(thrownCode { try EncryptedPrivateKey.decrypt(pem: truncated, passphrase: secret) } == .malformed)
        }
    }

    /// Single-byte corruption anywhere gives an error (or, by luck in the ciphertext, the key), never a crash.
    @Test func corruptedBytesNeverCrash() throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let der = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret, iterations: 16)
        var generator = SplitMix64(seed: 0x5EED)
        for index in der.indices {
            var corrupted = der
            corrupted[index] ^= UInt8.random(in: 1...255, using: &generator)
            do {
                let opened = try EncryptedPrivateKey.decrypt(der: corrupted, passphrase: secret)
                #expect(EncryptedPrivateKey.isPrivateKeyInfo(opened))
            } catch {
                // Any DevIDPKIError is fine here; the point is that nothing traps.
            }
        }
    }

    @Test func foreignParametersAreRejected() throws {
        let pkcs8 = Array(P256.Signing.PrivateKey().derRepresentation)
        let der = try EncryptedPrivateKey.encryptDER(privateKeyInfoDER: pkcs8, passphrase: secret, iterations: 1)
        let info = try EncryptedPrivateKeyInfo(derEncoded: der)
        let good = try PBES2Parameters(asn1Any: try #require(info.encryptionAlgorithm.parameters))

        func reencode(
            _ parameters: some DERSerializable,
            algorithm: ASN1ObjectIdentifier = PBES2Parameters.oid
        ) throws -> [UInt8] {
            let changed = EncryptedPrivateKeyInfo(
                encryptionAlgorithm: PKCS5AlgorithmIdentifier(
                    algorithm: algorithm,
                    parameters: try ASN1Any(erasing: parameters)
                ),
                encryptedData: info.encryptedData
            )
            var serializer = DER.Serializer()
            try serializer.serialize(changed)
            return serializer.serializedBytes
        }
        func code(_ bytes: [UInt8]) -> DevIDPKIError.Code? {
            thrownCode { try EncryptedPrivateKey.decrypt(der: bytes, passphrase: secret) }
        }

        // The unchanged parameters re-encode to the same bytes and still open.
        #expect(try reencode(good) == der)
        #expect(code(try reencode(good)) == nil)

        // pbeWithSHAAnd3-KeyTripleDES-CBC (PKCS#12 PBE), as `openssl pkcs8 -v1` writes.
        #expect(code(try reencode(ASN1Null(), algorithm: [1, 2, 840, 113_549, 1, 12, 1, 3])) == .unsupportedAlgorithm)

        // Iteration counts: zero and above the 10,000,000 ceiling are malformed; the ceiling itself is not refused
        // (it is not run here: it would take seconds).
        for iterations in [0, -5, 10_000_001, Int.max] {
            var bad = good
            bad.keyDerivation.iterationCount = iterations
            #expect(code(try reencode(bad)) == .malformed)
        }
        // An INTEGER wider than 64 bits.
        let huge = ASN1Any(derEncoded: try DER.parse([0x02, 0x11, 0x01] + [UInt8](repeating: 0, count: 16)))
        #expect(code(try reencode(RawPBKDF2(iterationCount: huge, parent: good))) == .malformed)

        // keyLength that disagrees with AES-256.
        var wrongKeyLength = good
        wrongKeyLength.keyDerivation.keyLength = 16
        #expect(code(try reencode(wrongKeyLength)) == .malformed)
        var rightKeyLength = good
        rightKeyLength.keyDerivation.keyLength = 32
        #expect(code(try reencode(rightKeyLength)) == nil)

        // IV of the wrong size.
        var shortIV = good
        shortIV.iv = Array(good.iv.prefix(8))
        #expect(code(try reencode(shortIV)) == .malformed)

        // Empty salt.
        var noSalt = good
        noSalt.keyDerivation.salt = []
        #expect(code(try reencode(noSalt)) == .malformed)

        // The other PRFs and key sizes parse; with the wrong key they fail as a wrong passphrase would.
        var sha512 = good
        sha512.keyDerivation.prf = .hmacWithSHA512
        #expect(code(try reencode(sha512)) == .wrongPassphrase)
        var aes128 = good
        aes128.cipher = .aes128CBC
        #expect(code(try reencode(aes128)) == .wrongPassphrase)
    }

    // MARK: OpenSSL interop

    /// Our PEM opens in `openssl pkey` with the right passphrase only, and holds the same key.
    @Test(arguments: [false, true])
    func opensslReadsOurFile(p384: Bool) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (pkcs8, publicKeyDER): ([UInt8], [UInt8])
        if p384 {
            let key = P384.Signing.PrivateKey()
            (pkcs8, publicKeyDER) = (Array(key.derRepresentation), Array(key.publicKey.derRepresentation))
        } else {
            let key = P256.Signing.PrivateKey()
            (pkcs8, publicKeyDER) = (Array(key.derRepresentation), Array(key.publicKey.derRepresentation))
        }
        let file = directory.path("key.pem")
        let pem = try EncryptedPrivateKey.encryptPEM(
            privateKeyInfoDER: pkcs8,
            passphrase: Array("SECRET".utf8),
            iterations: 2_048
        )
        try SecureFile.write(Array(pem.utf8), to: file)

        #expect(try OpenSSL.run(["pkey", "-in", file, "-passin", "pass:SECRET", "-noout"]).status == 0)
        #expect(try OpenSSL.run(["pkey", "-in", file, "-passin", "pass:WRONG", "-noout"]).status != 0)
        #expect(try OpenSSL.run(["pkey", "-in", file, "-passin", "pass:", "-noout"]).status != 0)

        let publicOut = directory.path("pub.der")
        let result = try OpenSSL.run([
            "pkey", "-in", file, "-passin", "pass:SECRET", "-pubout", "-outform", "DER", "-out", publicOut,
        ])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(try SecureFile.read(publicOut) == publicKeyDER)
    }

    /// Files written by `openssl pkcs8 -topk8` open with our decrypt and load in swift-crypto.
    @Test(arguments: OpenSSLVariant.all)
    func weReadOpenSSLFile(_ variant: OpenSSLVariant) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let plain = directory.path("plain.pem")
        let encrypted = directory.path("encrypted.pem")
        let publicOut = directory.path("pub.der")

        var result = try OpenSSL.run([
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:\(variant.curve)", "-out", plain,
        ])
        try #require(result.status == 0, "\(result.standardError)")
        result = try OpenSSL.run(
            ["pkcs8", "-topk8", "-in", plain, "-out", encrypted, "-passout", "pass:SECRET"] + variant.pkcs8Arguments
        )
        try #require(result.status == 0, "\(result.standardError)")
        result = try OpenSSL.run(["pkey", "-in", plain, "-pubout", "-outform", "DER", "-out", publicOut])
        try #require(result.status == 0, "\(result.standardError)")

        let pem = String(decoding: try SecureFile.read(encrypted), as: UTF8.self)
        let expectedPublicKey = try SecureFile.read(publicOut)
        if let code = variant.expectedError {
            #expect(thrownCode { try EncryptedPrivateKey.decrypt(pem: pem, passphrase: Array("SECRET".utf8)) } == code)
            return
        }

        let pkcs8 = try EncryptedPrivateKey.decrypt(pem: pem, passphrase: Array("SECRET".utf8))
        let publicKey: [UInt8] =
            variant.curve == "P-384"
            ? Array(try P384.Signing.PrivateKey(derRepresentation: pkcs8).publicKey.derRepresentation)
            : Array(try P256.Signing.PrivateKey(derRepresentation: pkcs8).publicKey.derRepresentation)
        #expect(publicKey == expectedPublicKey)
        #expect(
            thrownCode { try EncryptedPrivateKey.decrypt(pem: pem, passphrase: Array("WRONG".utf8)) }
                == .wrongPassphrase
        )
    }
}

// MARK: - Helpers
// Nested in the suite so they cannot collide with helpers in other files of this test target.

extension EncryptedPrivateKeyTests {
    /// The code of the `DevIDPKIError` that `body` throws, or nil if it returns. Any other error is a test failure.
    func thrownCode<T>(_ body: () throws -> T) -> DevIDPKIError.Code? {
        do {
            _ = try body()
            return nil
        } catch let error as DevIDPKIError {
            return error.code
        } catch {
            Issue.record("threw \(type(of: error)), not DevIDPKIError: \(error)")
            return nil
        }
    }

    struct BadDER: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        var testDescription: String { name }

        static let all: [BadDER] = [
            BadDER(name: "empty", bytes: []),
            BadDER(name: "one byte", bytes: [0x30]),
            BadDER(name: "empty SEQUENCE", bytes: [0x30, 0x00]),
            BadDER(name: "length past end", bytes: [0x30, 0x82, 0xFF, 0xFF, 0x30]),
            BadDER(name: "indefinite length", bytes: [0x30, 0x80, 0x00, 0x00]),
            BadDER(name: "INTEGER", bytes: [0x02, 0x01, 0x00]),
            BadDER(name: "text", bytes: Array(("-----BEGIN " + "ENCRYPTED PRIVATE KEY-----").utf8)),
            BadDER(name: "deep nesting", bytes: Array(repeating: [0x30, 0x80], count: 200).flatMap { $0 }),
            BadDER(name: "unencrypted PKCS#8", bytes: Array(P256.Signing.PrivateKey().derRepresentation)),
            BadDER(name: "trailing garbage", bytes: [0x30, 0x00, 0x00]),
            BadDER(name: "random", bytes: (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }),
            // PBES2 with no parameters, and with a non-sequence in place of them.
            BadDER(name: "PBES2 without parameters", bytes: wrap(algorithm: PBES2Parameters.oid, parameters: nil)),
            BadDER(
                name: "PBES2 with NULL parameters",
                bytes: wrap(algorithm: PBES2Parameters.oid, parameters: try? ASN1Any(erasing: ASN1Null()))
            ),
            // A well-formed PBES2 header over ciphertext that is not a whole number of blocks, or empty.
            BadDER(
                name: "ciphertext of 15 bytes",
                bytes: wrap(
                    algorithm: PBES2Parameters.oid,
                    parameters: sampleParameters,
                    ciphertext: Array(repeating: 0, count: 15)
                )
            ),
            BadDER(
                name: "empty ciphertext",
                bytes: wrap(algorithm: PBES2Parameters.oid, parameters: sampleParameters, ciphertext: [])
            ),
        ]

        private static let sampleParameters = try? ASN1Any(
            erasing: PBES2Parameters(
                keyDerivation: PBKDF2Parameters(
                    salt: [1, 2, 3, 4, 5, 6, 7, 8],
                    iterationCount: 1,
                    keyLength: nil,
                    prf: .hmacWithSHA256
                ),
                cipher: .aes256CBC,
                iv: Array(repeating: 0, count: 16)
            )
        )

        private static func wrap(
            algorithm: ASN1ObjectIdentifier,
            parameters: ASN1Any?,
            ciphertext: [UInt8] = Array(repeating: 0, count: 32)
        ) -> [UInt8] {
            let info = EncryptedPrivateKeyInfo(
                encryptionAlgorithm: PKCS5AlgorithmIdentifier(algorithm: algorithm, parameters: parameters),
                encryptedData: ASN1OctetString(contentBytes: ciphertext[...])
            )
            var serializer = DER.Serializer()
            try? serializer.serialize(info)
            return serializer.serializedBytes
        }
    }

    struct BadPEM: Sendable, CustomTestStringConvertible {
        let name: String
        let text: String
        var testDescription: String { name }

        static let all: [BadPEM] = [
            BadPEM(name: "empty", text: ""),
            BadPEM(name: "prose", text: "this is not a key\n"),
            BadPEM(name: "BEGIN only", text: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\nMIIB\n"),
            BadPEM(
                name: "empty body",
                text: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            BadPEM(
                name: "bad base64",
                text: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            BadPEM(
                name: "mismatched END",
                text: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"
            ),
            BadPEM(
                name: "garbage DER",
                text: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            BadPEM(
                name: "unencrypted key",
                text: PEMDocument(type: "PRIVATE KEY", derBytes: Array(P256.Signing.PrivateKey().derRepresentation))
                    .pemString
            ),
            BadPEM(name: "certificate label", text: "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"),
            BadPEM(
                name: "two blocks",
                text: String(
                    repeating: "-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
                    count: 2
                )
            ),
            BadPEM(
                name: "legacy Proc-Type header",
                text: """
                    \u{2D}----BEGIN EC PRIVATE KEY-----
                    Proc-Type: 4,ENCRYPTED
                    DEK-Info: AES-256-CBC,00000000000000000000000000000000

                    MAA=
                    -----END EC PRIVATE KEY-----

                    """
            ),
        ]
    }

    struct OpenSSLVariant: Sendable, CustomTestStringConvertible {
        let name: String
        let curve: String
        let pkcs8Arguments: [String]
        var expectedError: DevIDPKIError.Code? = nil
        var testDescription: String { name }

        static let all: [OpenSSLVariant] = [
            OpenSSLVariant(
                name: "AES-256-CBC, HMAC-SHA256, P-256",
                curve: "P-256",
                pkcs8Arguments: ["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256"]
            ),
            OpenSSLVariant(
                name: "AES-256-CBC, default PRF, P-256",
                curve: "P-256",
                pkcs8Arguments: ["-v2", "aes-256-cbc"]
            ),
            OpenSSLVariant(
                name: "AES-256-CBC, default PRF, P-384",
                curve: "P-384",
                pkcs8Arguments: ["-v2", "aes-256-cbc"]
            ),
            OpenSSLVariant(
                name: "AES-128-CBC, HMAC-SHA1",
                curve: "P-256",
                pkcs8Arguments: ["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"]
            ),
            OpenSSLVariant(
                name: "AES-192-CBC, HMAC-SHA384",
                curve: "P-384",
                pkcs8Arguments: ["-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA384"]
            ),
            OpenSSLVariant(
                name: "AES-256-CBC, HMAC-SHA512, 100000 iterations",
                curve: "P-256",
                pkcs8Arguments: ["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA512", "-iter", "100000"]
            ),
            OpenSSLVariant(
                name: "triple DES",
                curve: "P-256",
                pkcs8Arguments: ["-v2", "des3"],
                expectedError: .unsupportedAlgorithm
            ),
            OpenSSLVariant(
                name: "scrypt",
                curve: "P-256",
                pkcs8Arguments: ["-scrypt", "-scrypt_N", "1024"],
                expectedError: .unsupportedAlgorithm
            ),
            OpenSSLVariant(
                name: "PKCS#5 v1.5",
                curve: "P-256",
                pkcs8Arguments: ["-v1", "PBE-SHA1-3DES"],
                expectedError: .unsupportedAlgorithm
            ),
        ]
    }

    /// PBKDF2 parameters with a raw iterationCount, for encodings `Int` cannot express.
    struct RawPBKDF2: DERImplicitlyTaggable {
        static var defaultIdentifier: ASN1Identifier { .sequence }
        let iterationCount: ASN1Any
        let parent: PBES2Parameters

        init(iterationCount: ASN1Any, parent: PBES2Parameters) {
            self.iterationCount = iterationCount
            self.parent = parent
        }

        init(derEncoded: ASN1Node, withIdentifier: ASN1Identifier) throws {
            throw ASN1Error.invalidASN1Object(reason: "encode only")
        }

        /// Serializes as a whole `PBES2-params` whose PBKDF2 iterationCount is `iterationCount`.
        func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
            try coder.appendConstructedNode(identifier: identifier) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.serialize(PBKDF2Parameters.oid)
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(ASN1OctetString(contentBytes: parent.keyDerivation.salt[...]))
                        try coder.serialize(iterationCount)
                    }
                }
                try coder.serialize(
                    PKCS5AlgorithmIdentifier(
                        algorithm: parent.cipher.oid,
                        parameters: ASN1Any(erasing: ASN1OctetString(contentBytes: parent.iv[...]))
                    )
                )
            }
        }
    }

    /// A deterministic generator for reproducible corruption tests (not for keys).
    struct SplitMix64: RandomNumberGenerator {
        private var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// A fresh directory under the system temporary directory, removed by `remove()`.
    struct TemporaryDirectory {
        let url: URL

        init() throws {
            url = FileManager.default.temporaryDirectory.appendingPathComponent("devid-test-\(UUID().uuidString)")
            try SecureFile.createDirectory(url.path)
        }

        func path(_ name: String) -> String { url.appendingPathComponent(name).path }

        func remove() { try? FileManager.default.removeItem(at: url) }
    }

    /// Runs the system `openssl`.
    enum OpenSSL {
        static let executable = URL(fileURLWithPath: "/usr/bin/openssl")

        static func run(_ arguments: [String]) throws -> (status: Int32, standardError: String) {
            // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
            let standardError = Pipe.closeOnExec()
            let process = try SpawnedProcess.start(
                executable.path, arguments, stderr: standardError.fileHandleForWriting)
            try? standardError.fileHandleForWriting.close()
            let errorBytes = standardError.fileHandleForReading.readDataToEndOfFile()
            let status = process.waitUntilExit()
            return (status, String(decoding: errorBytes, as: UTF8.self))
        }
    }
}
