// swift-tools-version: 6.0
// The measurement behind the PostgreSQL client choice (libpq vs PostgresNIO): the same workload
// through each. Not part of the product; scripts/bench-pg-client builds and runs it.
import PackageDescription
let package = Package(
    name: "pg-client-compare",
    dependencies: [.package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2")],
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq"),
        .executableTarget(name: "libpq-bench", dependencies: ["CLibPQ"]),
        .executableTarget(name: "nio-bench", dependencies: [.product(name: "PostgresNIO", package: "postgres-nio")]),
    ]
)
