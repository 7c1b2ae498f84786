// swift-tools-version: 6.0
import PackageDescription

// Module graph (dependencies point inward):
//
//   tiktok-forwarder (CLI) ─┬─> ForwarderDaemon ─┬─> ForwarderStore ─────> ForwarderCore
//                           ├─> ForwarderSandbox  └─> ForwarderTransport ─> ForwarderCore
//                           └─> ...
//
// ForwarderCore is pure logic (JSON, transform, hashing, classification, retry policy) and
// knows nothing of SQLite, PostgreSQL, curl, sockets or the wall clock. ForwarderStore holds
// both stores: SQLite (system libsqlite3) and PostgreSQL (system libpq, blocking like the
// workers that call it; PostgresNIO was measured against it: scripts/bench-pg-client).
let package = Package(
    name: "tiktok-forwarder",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tiktok-forwarder", targets: ["tiktok-forwarder"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        .target(name: "ForwarderCore", dependencies: ["CCrypto"]),
        .target(name: "ForwarderStore", dependencies: ["ForwarderCore", "CSQLite", "CLibPQ"]),
        .target(name: "ForwarderTransport", dependencies: ["ForwarderCore", "CCurl"]),
        .target(name: "ForwarderSandbox", dependencies: [
            "ForwarderCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "ForwarderDaemon", dependencies: [
            "ForwarderCore", "ForwarderStore", "ForwarderTransport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "tiktok-forwarder", dependencies: [
            "ForwarderCore", "ForwarderStore", "ForwarderTransport", "ForwarderSandbox", "ForwarderDaemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ForwarderCoreTests", dependencies: ["ForwarderCore", "TestSupport"], exclude: ["Golden"]),
        .testTarget(name: "ForwarderStoreTests", dependencies: ["ForwarderCore", "ForwarderStore", "TestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["ForwarderCore", "ForwarderStore", "ForwarderTransport", "ForwarderSandbox", "TestSupport", .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "ForwarderDaemonTests", dependencies: ["ForwarderCore", "ForwarderDaemon", "TestSupport", .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams")]),
    ]
)
