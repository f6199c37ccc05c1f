// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
let fast: [SwiftSetting] = strict + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TandemCore", targets: ["TandemCore"]),
        .library(name: "TandemFormats", targets: ["TandemFormats"]),
        .library(name: "TandemNN", targets: ["TandemNN"]),
        .library(name: "TandemOptim", targets: ["TandemOptim"]),
        .library(name: "TandemData", targets: ["TandemData"]),
        .library(name: "TandemModels", targets: ["TandemModels"]),
        .library(name: "TandemCollectives", targets: ["TandemCollectives"]),
        .library(name: "TandemMPI", targets: ["TandemMPI"]),
        .library(name: "TandemParallel", targets: ["TandemParallel"]),
        .library(name: "TandemScale", targets: ["TandemScale"]),
        .library(name: "TandemCUDA", targets: ["TandemCUDA"]),
        .executable(name: "tandem", targets: ["tandem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "TandemCore", swiftSettings: fast, linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "TandemFormats", dependencies: ["TandemCore"], swiftSettings: strict),
        .target(name: "TandemNN", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "TandemOptim", dependencies: ["TandemCore", "TandemNN"], swiftSettings: fast),
        .target(name: "TandemData", dependencies: ["TandemCore", "TandemFormats"], swiftSettings: strict),
        .target(name: "TandemModels", dependencies: ["TandemCore", "TandemNN", "TandemFormats"], swiftSettings: strict),
        .target(name: "TandemCollectives", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "TandemMPI", dependencies: ["TandemCore", "TandemCollectives"], swiftSettings: fast, linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "TandemParallel", dependencies: ["TandemCore", "TandemFormats", "TandemNN", "TandemOptim", "TandemData", "TandemModels", "TandemCollectives", "TandemMPI"], swiftSettings: strict),
        .target(name: "TandemScale", dependencies: ["TandemCore", "TandemModels", "TandemCollectives", "TandemParallel"], swiftSettings: strict),
        .target(name: "_TandemCUDAShims"),
        .target(name: "TandemCUDA", dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemModels", "TandemCollectives", "_TandemCUDAShims"],
                swiftSettings: strict, linkerSettings: [.linkedLibrary("dl")]),
        .executableTarget(
            name: "tandem",
            dependencies: [
                "TandemCore", "TandemFormats", "TandemNN", "TandemOptim", "TandemData", "TandemModels", "TandemParallel", "TandemScale", "TandemMPI", "TandemCUDA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .testTarget(name: "TandemCoreTests", dependencies: ["TandemCore", "TandemNN"], swiftSettings: strict),
        .testTarget(
            name: "TandemParallelTests",
            dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemModels", "TandemCollectives", "TandemParallel", "TandemFormats"],
            swiftSettings: strict),
        .testTarget(name: "TandemFormatsTests", dependencies: ["TandemFormats", "TandemCore"], swiftSettings: strict),
        .testTarget(name: "TandemCLITests", dependencies: ["TandemFormats", "TandemCore"], swiftSettings: strict),
        .testTarget(name: "TandemDataTests", dependencies: ["TandemData", "TandemCore", "TandemFormats"], swiftSettings: strict),
        .testTarget(
            name: "TandemModelsTests",
            dependencies: ["TandemCore", "TandemFormats", "TandemNN", "TandemOptim", "TandemModels"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(name: "TandemCUDATests", dependencies: ["TandemCUDA", "TandemCore", "TandemModels"], swiftSettings: strict),
        .testTarget(name: "TandemScaleTests", dependencies: ["TandemScale", "TandemParallel"], swiftSettings: strict),
        .testTarget(name: "TandemMPITests", dependencies: ["TandemMPI", "TandemCollectives", "TandemCore", "TandemFormats"], swiftSettings: strict),
    ]
)
