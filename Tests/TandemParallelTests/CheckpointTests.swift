import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemFormats
import TandemModels
import TandemOptim
import TandemParallel
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Scratch directories

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String
    init(_ name: String) throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("tandem-parallel-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Every optimizer slot, by parameter name then slot index.
func slots(_ state: OptimizerState) -> [String: [[Float]]] { state.slots.mapValues { $0.map(\.scalars) } }

// MARK: - Training with checkpoints

/// How a run that writes or resumes checkpoints is set up.
struct ResumePlan: Sendable, CustomStringConvertible {
    var workload: Workload
    var optimizer: OptimizerKind
    var ranks: Int
    var accumulate: Int
    var description: String { "\(workload), \(optimizer), \(ranks) rank\(ranks == 1 ? "" : "s"), \(accumulate) micro-batch\(accumulate == 1 ? "" : "es")" }
    var settings: [String: String] {
        ["model": workload.rawValue, "optimizer": optimizer.rawValue, "workers": "\(ranks)", "accumulate": "\(accumulate)", "batch": "2"]
    }
}

/// Trains to `steps` optimizer steps in a fresh world, first resuming from `resume` when
/// given, and writing a checkpoint to `writeTo` after step `writeAt`. Returns every rank's
/// final weights. Ranks other than 0 start from other weights, which DDP (fresh run) or
/// the checkpoint (resumed run) must replace.
func trainWithCheckpoints(
    _ plan: ResumePlan, data: Dataset, steps: Int, resume: String? = nil, writeAt: Int? = nil, writeTo: String? = nil
) throws -> [[[Float]]] {
    try ThreadLauncher.run(workers: plan.ranks, timeout: 60) { rank, group -> [[Float]] in
        let model = plan.workload.make(seed: rank == 0 && resume == nil ? 0 : 300 + UInt64(rank))
        let worker = try Worker(model: model, group: group, optimizer: try plan.optimizer.make())
        let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: plan.ranks, strategy: .cyclic, seed: 21)
        let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 2, dropLast: true, prefetch: 1)
        var drawn = 0
        if let resume {
            let record = try Checkpoint.resume(from: resume, model: model, optimizer: worker.optimizer, settings: plan.settings)
            guard record.step == worker.optimizer.step && record.workers == plan.ranks else {
                throw CollectiveError.invalid("rank \(rank): checkpoint record \(record.step)/\(record.workers) vs optimizer step \(worker.optimizer.step)")
            }
            drawn = record.batchesDrawn
            try loader.seek(to: .init(epoch: drawn / loader.batchesPerEpoch, batch: drawn % loader.batchesPerEpoch))
        }
        while worker.optimizer.step < steps {
            try worker.step(microBatches: plan.accumulate) {
                guard let b = loader.next() else { throw OutOfData(rank: rank) }
                drawn += 1
                return plan.workload.batch(b)
            }
            if rank == 0, let writeTo, worker.optimizer.step == writeAt {
                try Checkpoint(step: worker.optimizer.step, batchesDrawn: drawn, workers: plan.ranks, settings: plan.settings)
                    .write(model: model, optimizer: worker.optimizer, to: writeTo)
            }
        }
        return weights(model)
    }
}

/// One model trained on the calling thread for `steps` steps of fixed batches; for the
/// file-level checkpoint tests.
func trainSingle(_ model: any Model, _ state: OptimizerState, data: Dataset, steps: Int) {
    let tape = Tape()
    for _ in 0..<steps {
        let first = (state.step * 4) % (data.count - 4)
        let batch = Workload.mlp.batch(data.batch(indices: Array(first..<(first + 4))))
        model.zeroGradients()
        tape.backward(tape.record { model.loss(batch) })
        state.apply(to: model.namedParameters)
    }
}

extension ParallelTests {
    @Suite("Checkpoints") struct Checkpoints {
        static let plans: [ResumePlan] = [
            ResumePlan(workload: .mlp, optimizer: .sgd, ranks: 1, accumulate: 1),
            ResumePlan(workload: .mlp, optimizer: .sgd, ranks: 3, accumulate: 1),
            ResumePlan(workload: .mlp, optimizer: .adamw, ranks: 2, accumulate: 2),
            ResumePlan(workload: .mlp, optimizer: .adamw, ranks: 3, accumulate: 1),
            ResumePlan(workload: .gpt, optimizer: .sgd, ranks: 2, accumulate: 1),
            ResumePlan(workload: .gpt, optimizer: .adamw, ranks: 2, accumulate: 1),
            ResumePlan(workload: .lstm, optimizer: .sgd, ranks: 4, accumulate: 2),
        ]

        @Test("stop at step k, resume in a fresh world, continue to n: bit-identical to an uninterrupted run", arguments: plans)
        func resumeIsBitIdentical(_ plan: ResumePlan) throws {
            let dir = try ScratchDirectory("resume")
            defer { dir.remove() }
            let data = try plan.workload.dataset(count: 37)
            let (k, n) = (5, 9)  // crosses an epoch boundary of the 3-rank runs
            let straight = try trainWithCheckpoints(plan, data: data, steps: n)
            let first = try trainWithCheckpoints(plan, data: data, steps: k, writeAt: k, writeTo: dir.path)
            let resumed = try trainWithCheckpoints(plan, data: data, steps: n, resume: dir.path)
            #expect(maxRelativeError(first[0], straight[0]) > 0, "\(plan): the first k steps already gave the final weights")
            for r in 0..<plan.ranks {
                expectClose(resumed[r], straight[0], .exact, "\(plan): rank \(r) after resuming at \(k) vs uninterrupted run to \(n)")
            }
        }

        @Test("the checkpoint holds the weights under their PyTorch names, the optimizer state and the record")
        func contents() throws {
            let dir = try ScratchDirectory("contents")
            defer { dir.remove() }
            let data = try Workload.mlp.dataset(count: 37)
            let model = Workload.mlp.make(seed: 0)
            let state = OptimizerState(try OptimizerKind.adamw.make())
            trainSingle(model, state, data: data, steps: 3)
            try Checkpoint(step: 3, batchesDrawn: 6, workers: 2, settings: ["model": "mlp"]).write(model: model, optimizer: state, to: dir.path)
            let file = try Safetensors.read(path: Checkpoint.path(in: dir.path))
            #expect(file.tensors["0.weight"]?.shape == [16, 12])
            #expect(file.tensors["2.bias"]?.floats() == model.namedParameters.first { $0.name == "2.bias" }!.parameter.value.scalars)
            #expect(file.tensors["tandem.optimizer.0.weight.exp_avg_sq"]?.shape == [16, 12])
            #expect(file.metadata["step"] == "3" && file.metadata["batches_drawn"] == "6" && file.metadata["workers"] == "2")
            #expect(file.metadata["setting.model"] == "mlp")
            let again = Workload.mlp.make(seed: 9)
            let restored = OptimizerState(try OptimizerKind.adamw.make())
            let record = try Checkpoint.resume(from: dir.path, model: again, optimizer: restored, settings: ["model": "mlp"])
            #expect(record.step == 3 && record.batchesDrawn == 6 && record.workers == 2 && record.settings == ["model": "mlp"])
            #expect(restored.step == state.step)
            expectClose(weights(again), weights(model), .exact, "weights read back")
            #expect(slots(restored) == slots(state), "optimizer state read back")
        }

        // MARK: Failures

        @Test("a write that fails midway leaves the previous checkpoint loadable, and stale temporary files are ignored")
        func failedWriteKeepsPrevious() throws {
            let dir = try ScratchDirectory("failed-write")
            defer { dir.remove() }
            let data = try Workload.mlp.dataset(count: 37)
            let model = Workload.mlp.make(seed: 0)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            trainSingle(model, state, data: data, steps: 2)
            try Checkpoint(step: 2, batchesDrawn: 2, workers: 1, settings: [:]).write(model: model, optimizer: state, to: dir.path)
            let good = (weights: weights(model), slots: slots(state))

            // Another process died while writing: its temporary file holds garbage.
            let path = Checkpoint.path(in: dir.path)
            try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: "\(path).tmp-999999"))
            // This process's own temporary name is taken by a directory, so the next write fails.
            let blocker = "\(path).tmp-\(getpid())"
            try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: false)
            trainSingle(model, state, data: data, steps: 2)
            #expect(throws: (any Error).self, "writing over a blocked temporary file") {
                try Checkpoint(step: 4, batchesDrawn: 4, workers: 1, settings: [:]).write(model: model, optimizer: state, to: dir.path)
            }
            try FileManager.default.removeItem(atPath: blocker)

            let again = Workload.mlp.make(seed: 5)
            let restored = OptimizerState(try OptimizerKind.sgd.make())
            let record = try Checkpoint.resume(from: dir.path, model: again, optimizer: restored, settings: [:])
            #expect(record.step == 2 && restored.step == 2)
            expectClose(weights(again), good.weights, .exact, "weights of the checkpoint before the failed write")
            #expect(slots(restored) == good.slots)

            // A later write succeeds despite the stale garbage, and wins.
            try Data("half a checkpoint".utf8).write(to: URL(fileURLWithPath: blocker))
            try Checkpoint(step: 4, batchesDrawn: 4, workers: 1, settings: [:]).write(model: model, optimizer: state, to: dir.path)
            #expect(!FileManager.default.fileExists(atPath: blocker), "the temporary file outlived the rename")
            let record4 = try Checkpoint.resume(from: dir.path, model: again, optimizer: restored, settings: [:])
            #expect(record4.step == 4)
            expectClose(weights(again), weights(model), .exact, "weights of the second checkpoint")
        }

        @Test("a truncated checkpoint is a clean error, and changes nothing", arguments: [0, 7, 8, 60, 500, -1])
        func truncated(keep: Int) throws {
            let dir = try ScratchDirectory("truncated")
            defer { dir.remove() }
            let data = try Workload.mlp.dataset(count: 37)
            let model = Workload.mlp.make(seed: 0)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            trainSingle(model, state, data: data, steps: 2)
            try Checkpoint(step: 2, batchesDrawn: 2, workers: 1, settings: ["model": "mlp"]).write(model: model, optimizer: state, to: dir.path)
            let path = Checkpoint.path(in: dir.path)
            let bytes = try FileIO.contents(of: path)
            let length = keep >= 0 ? keep : bytes.count - 1
            try Data(bytes[..<length]).write(to: URL(fileURLWithPath: path))

            let fresh = Workload.mlp.make(seed: 5)
            let before = weights(fresh)
            let restored = OptimizerState(try OptimizerKind.sgd.make())
            do {
                _ = try Checkpoint.resume(from: dir.path, model: fresh, optimizer: restored, settings: ["model": "mlp"])
                Issue.record("a checkpoint cut to \(length) of \(bytes.count) bytes was accepted")
            } catch let error as FormatError {
                #expect(error.description.contains("checkpoint.safetensors"), "the error does not name the file: \(error)")
                #expect(!error.description.contains("\n"), "not one line: \(error)")
            } catch {
                Issue.record("cut to \(length) bytes: expected a FormatError, got \(type(of: error)): \(error)")
            }
            expectClose(weights(fresh), before, .exact, "weights after a failed resume")
            #expect(restored.step == 0 && restored.slots.isEmpty, "optimizer after a failed resume")
        }

        struct Refusal: Sendable, CustomStringConvertible {
            var name: String
            var description: String { name }
        }

        @Test("resume refuses what does not fit, names why, and changes nothing", arguments: [
            Refusal(name: "setting differs"), Refusal(name: "setting absent"), Refusal(name: "other model"),
            Refusal(name: "other optimizer"), Refusal(name: "no optimizer step"), Refusal(name: "no checkpoint"),
        ])
        func refusals(_ r: Refusal) throws {
            let dir = try ScratchDirectory("refusal")
            defer { dir.remove() }
            let data = try Workload.mlp.dataset(count: 37)
            let model = Workload.mlp.make(seed: 0)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            trainSingle(model, state, data: data, steps: 2)
            let written = ["model": "mlp", "batch": "2"]
            if r.name != "no checkpoint" {
                try Checkpoint(step: 2, batchesDrawn: 2, workers: 1, settings: written).write(model: model, optimizer: state, to: dir.path)
            }
            var target: any Model = Workload.mlp.make(seed: 5)
            var optimizer = OptimizerKind.sgd
            var settings = written
            var keywords: [String] = []
            switch r.name {
            case "setting differs": settings["batch"] = "4"; keywords = ["batch", "2", "4"]
            case "setting absent": settings["accumulate"] = "2"; keywords = ["accumulate", "2"]
            case "other model":
                var g = SeededGenerator(seed: 1)
                target = MLP(dimensions: [12, 20, 10], generator: &g); keywords = ["0.weight"]
            case "other optimizer": optimizer = .adamw; keywords = ["exp_avg"]
            case "no optimizer step":
                let path = Checkpoint.path(in: dir.path)
                var file = try Safetensors.read(path: path)
                file.metadata["optimizer_step"] = nil
                try Safetensors.write(file.tensors, metadata: file.metadata, to: path)
                keywords = ["optimizer_step"]
            default: keywords = ["no checkpoint"]
            }
            let before = weights(target)
            let restored = OptimizerState(try optimizer.make())
            do {
                _ = try Checkpoint.resume(from: dir.path, model: target, optimizer: restored, settings: settings)
                Issue.record("\(r): resume succeeded")
            } catch {
                let text = "\(error)"
                for keyword in keywords { #expect(text.contains(keyword), "\(r): '\(keyword)' missing from: \(text)") }
            }
            expectClose(weights(target), before, .exact, "\(r): weights after a refused resume")
            #expect(restored.step == 0 && restored.slots.isEmpty, "\(r): optimizer after a refused resume")
        }
    }
}
