import ArgumentParser
import Foundation
import TandemCUDA
import TandemMPI

// MARK: - --backend nccl

/// This process as one rank of an NCCL job, on GPU `LOCAL_RANK`: started by `tandem
/// launch` (meeting through its folder), by `mpirun`/`srun` (the NCCL id broadcast over
/// MPI), or alone (a job of one).
struct NCCLJob {
    let gpu: CUDAContext
    let group: NCCLGroup

    static func join(timeout: Double) throws -> NCCLJob {
        let environment = ProcessInfo.processInfo.environment
        let launcher = LaunchEnvironment.current()
        // Under `tandem launch` the GPU is LOCAL_RANK, whatever an enclosing mpirun or Slurm job says.
        let launched = environment["TANDEM_RENDEZVOUS"] != nil
        let device = launched ? (environment["LOCAL_RANK"].flatMap(Int.init) ?? 0) : launcher?.localRank ?? launcher?.rank ?? 0
        if !launched && launcher?.wantsMPI != true, let size = launcher?.size, size > 1 {
            throw ValidationError("--backend nccl: \(launcher!.source) started \(size) processes but gave them no way to meet; start them with `tandem launch --gpus \(size) -- …` (or mpirun)")
        }
        let gpu: CUDAContext
        do { gpu = try CUDAContext(device: device) } catch {
            throw ValidationError("--backend nccl: rank \(launcher?.rank ?? 0) cannot open GPU \(device): \(error)")
        }
        do {
            if let rendezvous = try NCCLRendezvous.fromEnvironment() {
                return NCCLJob(gpu: gpu, group: try NCCLGroup.join(gpu: gpu, rendezvous: rendezvous, timeout: timeout))
            }
            if launcher?.wantsMPI == true {
                let bootstrap = MPIGroup(world: try MPIWorld.shared(), timeout: timeout, verifyCalls: false)
                return NCCLJob(gpu: gpu, group: try NCCLGroup.join(gpu: gpu, bootstrap: bootstrap, timeout: timeout))
            }
            // Alone: a job of one, meeting in a private folder (removed at once; the
            // progress file stays open until the group ends).
            let folder = NSTemporaryDirectory() + "tandem-nccl-\(getpid())"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let group = try NCCLGroup.join(gpu: gpu, rendezvous: try NCCLRendezvous(directory: folder, rank: 0, size: 1), timeout: timeout)
            return NCCLJob(gpu: gpu, group: group)
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("--backend nccl: \(error)")
        }
    }

    /// The process that prints and writes results.
    var isPrimary: Bool { group.rank == 0 }
}

// MARK: - comm --backend nccl

/// One size of the NCCL all-reduce sweep, in `tandem comm`'s JSON schema.
struct NCCLCommRow: Codable {
    var operation = "all-reduce"
    var workers: Int
    var bytes: Int
    var microseconds: Double
    var algbw_gbps: Double
    var busbw_gbps: Double
}

extension Comm {
    /// The all-reduce sweep between the GPUs of an NCCL job (every rank runs it; rank 0 prints).
    func runOverNCCL(sizes: [Int]) throws {
        guard operation == "all-reduce" else { throw ValidationError("--backend nccl times all-reduce; got --operation \(operation)") }
        let job = try NCCLJob.join(timeout: 300)
        let rows = try job.group.timeAllReduce(sizes: sizes, iterations: iterations)
        guard job.isPrimary else { return }
        let out = rows.map { NCCLCommRow(workers: job.group.size, bytes: $0.bytes, microseconds: $0.microseconds, algbw_gbps: $0.algbw, busbw_gbps: $0.busbw) }
        if json { for r in out { try printJSON(r) }; return }
        print("all-reduce, \(job.group.size) GPU\(job.group.size == 1 ? "" : "s") (nccl backend, \(job.gpu.device.name))")
        print("       bytes      time(us)   algbw(GB/s)   busbw(GB/s)")
        for r in out { print(String(format: "%12d  %12.1f  %12.2f  %12.2f", r.bytes, r.microseconds, r.algbw_gbps, r.busbw_gbps)) }
    }
}
