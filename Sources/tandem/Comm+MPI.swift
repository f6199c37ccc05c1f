import ArgumentParser
import Foundation
import TandemCollectives
import TandemParallel

// MARK: - comm --verify and --compare-library

extension Comm {
    /// Runs ``CollectiveCheck`` on this backend and prints one line per case on rank 0.
    func verifyCollectives() throws {
        let failures = try Launch.run(backend: launch.resolved, workers: workers) { rank, group in
            try CollectiveCheck.run(group: group)
        }
        guard Launch.isPrimary else { return }
        let all = failures.enumerated().flatMap { rank, list in list.map { "rank \(rank): \($0)" } }
        if !all.isEmpty { throw ValidationError("collectives gave wrong results:\n" + all.joined(separator: "\n")) }
        print("collectives correct on \(failures.count) rank\(failures.count == 1 ? "" : "s") (\(launch.resolved.rawValue) backend): \(CollectiveCheck.caseCount(size: failures.count)) cases")
    }

    /// Our all-reduce beside the library's `MPI_Allreduce`, size by size.
    func printLibraryComparison(_ rows: [CommBenchmark.Row]) {
        print("all-reduce, \(workers) processes (mpi backend) against the MPI library's MPI_Allreduce")
        print("       bytes   tandem(us)  library(us)  tandem busbw  library busbw   ratio")
        for r in rows {
            let lib = r.library_busbw_gbps ?? .nan
            print(String(format: "%12d  %11.1f  %11.1f  %12.2f  %13.2f  %6.2f", r.bytes, r.microseconds, r.library_us ?? .nan, r.busbw_gbps, lib, r.busbw_gbps / lib))
        }
    }
}
