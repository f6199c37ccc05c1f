import ArgumentParser
import Foundation
import TandemCore

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Say which native libraries Tandem found, and where.")

    func run() throws {
        if let blas = BLAS.library {
            print("BLAS: \(blas.path)\(blas.config.map { " (\($0))" } ?? "")")
        } else {
            print("BLAS: not found — GEMM runs portable Swift kernels (slower). Install it with `apt-get install libopenblas0` or set TANDEM_BLAS=/path/to/libopenblas.so.0")
        }
        if let override = ProcessInfo.processInfo.environment["TANDEM_BLAS"] { print("  TANDEM_BLAS=\(override)") }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
