// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "DevID",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DevIDCore", targets: ["DevIDCore"]),
        .library(name: "DevIDPKI", targets: ["DevIDPKI"]),
        .library(name: "DevIDStore", targets: ["DevIDStore"]),
        .library(name: "DevIDServer", targets: ["DevIDServer"]),
        .library(name: "DevIDAgent", targets: ["DevIDAgent"]),
        .library(name: "DevIDTesting", targets: ["DevIDTesting"]),
        .library(name: "DevIDSimulator", targets: ["DevIDSimulator"]),
        .executable(name: "devid", targets: ["devid"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["JSON"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(name: "DevIDCore", swiftSettings: swiftSettings),
        // The PKCS#11 header (libp11-kit-dev); modules are loaded at run time by DevIDPKCS11, never linked.
        .systemLibrary(name: "CPKCS11", path: "Sources/CPKCS11", providers: [.apt(["libp11-kit-dev"])]),
        .target(
            name: "DevIDPKCS11",
            dependencies: [
                "CPKCS11",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIDPKI",
            dependencies: [
                "DevIDCore", "DevIDPKCS11",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIDStore",
            dependencies: [
                "DevIDCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIDServer",
            dependencies: [
                "DevIDCore", "DevIDPKCS11", "DevIDPKI", "DevIDStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIDAgent",
            dependencies: [
                "DevIDCore", "DevIDPKCS11", "DevIDPKI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // `devid simulate` (docs/simulate.md): a fleet on a virtual clock, run through the real lifecycle code.
        .target(
            name: "DevIDSimulator",
            dependencies: ["DevIDCore", "DevIDStore", "DevIDServer", "DevIDAgent"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIDTesting",
            dependencies: [
                "DevIDCore", "DevIDPKI", "DevIDStore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "devid",
            dependencies: [
                "DevIDCore", "DevIDPKCS11", "DevIDPKI", "DevIDStore", "DevIDServer", "DevIDAgent", "DevIDSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "devid-bench",
            dependencies: [
                "DevIDCore", "DevIDPKCS11", "DevIDPKI", "DevIDStore", "DevIDServer", "DevIDAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/devid-bench",
            swiftSettings: swiftSettings
        ),
        // Fuzzing (docs/fuzzing.md): the targets, the libFuzzer driver and its one C declaration. scripts/fuzz builds
        // devid-fuzz with -sanitize=fuzzer,address -DFUZZING in .build-fuzz; the normal build links a replayer.
        .target(name: "CDevIDFuzz", path: "Fuzz/CDevIDFuzz"),
        .target(
            name: "DevIDFuzzTargets",
            dependencies: [
                "DevIDCore", "DevIDPKI", "DevIDServer", "DevIDAgent",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            path: "Fuzz/Targets",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "devid-fuzz",
            dependencies: ["DevIDFuzzTargets", "CDevIDFuzz"],
            path: "Fuzz/Driver",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDSimulatorTests",
            dependencies: ["DevIDSimulator", "DevIDCore", "DevIDStore", "DevIDServer", "DevIDTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDFuzzTests",
            dependencies: ["DevIDFuzzTargets", "DevIDCore", "DevIDPKI", "DevIDAgent", "DevIDServer", "DevIDTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDPKCS11Tests",
            dependencies: [
                "DevIDPKCS11", "DevIDPKI", "DevIDTesting",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "DevIDCoreTests", dependencies: ["DevIDCore", "DevIDTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DevIDPKITests",
            dependencies: [
                "DevIDCore", "DevIDPKI", "DevIDTesting",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDStoreConformanceTests",
            dependencies: [
                "DevIDCore", "DevIDStore", "DevIDTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDAgentTests",
            dependencies: [
                "DevIDCore", "DevIDPKI", "DevIDStore", "DevIDServer", "DevIDAgent", "DevIDTesting",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIDServerTests",
            dependencies: [
                "DevIDCore", "DevIDPKI", "DevIDStore", "DevIDServer", "DevIDAgent", "DevIDTesting",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
