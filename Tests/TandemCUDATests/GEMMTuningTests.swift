#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import TandemCUDA

@Suite("GEMM tuning")
struct GEMMTuningTests {
    @Test("the heuristic's first stays unless another is more than 2% faster", arguments: [
        ([1.0, 0.99, 1.2] as [Double?], nil as Double?, 0),   // 1% faster: noise, keep the first
        ([1.0, 0.97, 1.2], nil, 1),                           // 3% faster: take it
        ([1.0, 0.97, 0.90], nil, 2),                          // the fastest of several
        ([1.0, 0.97], 0.5, -1),                               // the caller's other way wins
        ([1.0, 0.97], 0.99, 1),                               // ... only when it is the fastest
        ([nil, 2.0, 1.5], nil, 2),                            // the first failed: the fastest that ran
        ([1.0], nil, 0),
    ])
    func choice(times: [Double?], alternative: Double?, expected: Int) {
        #expect(GEMMTuner.fastest(first: times, alternative: alternative) == expected)
    }

    @Test("a configuration the heuristic did not offer must be more than 5% faster than all the others", arguments: [
        ([1.0, 0.99, 0.96] as [Double?], nil as Double?, 0),  // a variant 3% faster than the best: keep the first
        ([1.0, 0.97, 0.96], nil, 1),                          // ... the heuristic's 3% faster one wins
        ([1.0, 0.96, 0.93], nil, 1),                          // 7% faster than the first, 3% than the best: not enough
        ([1.0, 0.99, 0.93], nil, 2),                          // 6% faster than the best: take it
        ([1.0, 0.99, 0.96], 0.97, -1),                        // the caller's other way among the rest
        ([1.0, 0.99, 0.90], 0.97, 2),                         // ... unless the variant beats it too
        ([nil, 2.0, 1.95], nil, 1),                           // the first failed: the heuristic's that ran
        ([nil, 2.0, 1.5], nil, 2),                            // ... unless the variant is clearly faster
        ([nil, nil, 1.5], nil, 2),                            // ... or nothing else ran
    ])
    func variantChoice(times: [Double?], alternative: Double?, expected: Int) {
        #expect(GEMMTuner.fastest(first: times, offered: 2, alternative: alternative) == expected)
    }

    @Test("choose holds a variant to the wider margin")
    func chooseVariant() throws {
        var current = 0
        let speeds: [Int: Double] = [0: 1.0, 1: 0.99, 2: 0.96]
        let tuner = GEMMTuner(time: { body in
            try body()
            return speeds[current]! * Double(GEMMTuner.callsPerRun)
        }, alternative: nil, record: nil)
        #expect(try tuner.choose(candidates: 3, offered: 2) { current = $0 }?.choice == 0)
        #expect(try tuner.choose(candidates: 3) { current = $0 }?.choice == 2)
    }

    @Test("with every candidate offered by the heuristic, the plain rule")
    func allOffered() {
        for times: [Double?] in [[1.0, 0.99, 1.2], [1.0, 0.97, 0.90], [nil, 2.0, 1.5]] {
            #expect(GEMMTuner.fastest(first: times, offered: times.count, alternative: nil) == GEMMTuner.fastest(first: times, alternative: nil))
        }
    }

    @Test("nothing ran: no choice")
    func nothingRan() {
        #expect(GEMMTuner.fastest(first: [nil, nil], alternative: nil) == nil)
        #expect(GEMMTuner.fastest(first: [], alternative: nil) == nil)
        #expect(GEMMTuner.fastest(first: [], alternative: 0.3) == -1)
    }

    @Test("choose times every candidate in turns and leaves out one that throws")
    func chooseTimesInTurns() throws {
        struct Refused: Error {}
        var order: [Int] = []
        var current = 0
        let speeds: [Int: Double] = [0: 1.0, 1: 0.5, 2: 0.1]
        let tuner = GEMMTuner(time: { body in
            try body()
            return speeds[current]! * Double(GEMMTuner.callsPerRun)
        }, alternative: nil, record: nil)
        let chosen = try tuner.choose(candidates: 3) { i in
            current = i
            order.append(i)
            if i == 2 { throw Refused() }   // the fastest on paper, but it does not run
        }
        #expect(chosen?.choice == 1)
        #expect(chosen?.firstMs == 1.0)
        #expect(chosen?.chosenMs == 0.5)
        // Warm-up of all three, then three rounds of the two that ran, each run `callsPerRun` calls.
        let rounds = Array(repeating: Array(repeating: 0, count: GEMMTuner.callsPerRun) + Array(repeating: 1, count: GEMMTuner.callsPerRun),
                           count: GEMMTuner.runs).flatMap { $0 }
        #expect(order == [0, 1, 2] + rounds)
    }

    func temporaryDirectory() -> String {
        var template = Array("/tmp/tandem-gemm-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        #expect(made != nil)
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func write(_ text: String, to path: String) {
        let file = fopen(path, "w")!
        fputs(text, file)
        fclose(file)
    }

    func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var out = ""
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            out += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return out
    }

    @Test("a record keeps choices across instances, in a folder it makes")
    func recordRoundTrip() throws {
        let dir = temporaryDirectory() + "/nested/gemm"
        let record = try #require(GEMMTuningRecord.forDevice("NVIDIA H200-sm90-132", library: "cublasLt13.1.0", directory: dir))
        #expect(record.path.hasPrefix(dir + "/NVIDIA_H200-sm90-132-cublasLt13.1.0"))
        #expect(record.choice("NN 1x2x3") == nil)
        #expect(record.keep("NN 1x2x3", choice: 4, note: "first 0.1 ms, chosen 0.05 ms"))
        #expect(record.keep("TN 4x5x6 or other", choice: -1, note: "tab\there"))
        let again = GEMMTuningRecord(path: record.path)
        #expect(again.choice("NN 1x2x3") == 4)
        #expect(again.choice("TN 4x5x6 or other") == -1)
        #expect(again.kinds == ["NN 1x2x3", "TN 4x5x6 or other"])
        #expect(again.skipped.isEmpty)
        // No temporary file is left behind.
        #expect(read(record.path + ".tmp\(getpid())") == nil)
    }

    @Test("lines that do not parse are skipped, named, and dropped by the next write")
    func malformedLines() throws {
        let dir = temporaryDirectory()
        let path = dir + "/record.tsv"
        write("# a comment\nNN 1x2x3\t2\tnote\nno tab here\nTT 7x7x7\tseven\t\nNT 8x8x8\t-2\t\nTN 9x9x9\t\(CuBLASLt.longestList)\t\n\t3\t\nNN 2x2x2\t0\nNT 3x3x3\t\(CuBLASLt.longestList - 1)\t\n", to: path)
        let record = GEMMTuningRecord(path: path)
        #expect(record.choice("NN 1x2x3") == 2)
        #expect(record.choice("NT 3x3x3") == CuBLASLt.longestList - 1)   // the last variant of the longest list
        #expect(record.choice("NN 2x2x2") == 0)
        #expect(record.choice("TT 7x7x7") == nil)
        #expect(record.choice("NT 8x8x8") == nil)
        #expect(record.choice("TN 9x9x9") == nil)
        #expect(record.skipped.count == 5)
        #expect(record.skipped.first?.hasPrefix("line 3:") == true)
        #expect(record.keep("NN 3x3x3", choice: 1, note: ""))
        #expect(record.skipped.isEmpty)
        let text = try #require(read(path))
        #expect(!text.contains("no tab here"))
        #expect(GEMMTuningRecord(path: path).kinds == ["NN 1x2x3", "NN 2x2x2", "NN 3x3x3", "NT 3x3x3"])
    }

    @Test("an unwritable folder keeps the record in memory and leaves the old file whole")
    func unwritable() throws {
        let dir = temporaryDirectory()
        let path = dir + "/record.tsv"
        write("NN 1x1x1\t1\tkept\n", to: path)
        chmod(dir, 0o500)
        defer { chmod(dir, 0o700) }
        let record = GEMMTuningRecord(path: path)
        let wrote = record.keep("NN 2x2x2", choice: 3, note: "")
        #expect(record.choice("NN 2x2x2") == 3)
        if getuid() != 0 {   // root writes anyway
            #expect(!wrote)
            #expect(read(path) == "NN 1x1x1\t1\tkept\n")
        }
    }

    @Test("TANDEM_GEMM_CACHE=none keeps no record; a folder is used as given")
    func environment() {
        let saved = getenv("TANDEM_GEMM_CACHE").map { String(cString: $0) }
        defer { if let saved { setenv("TANDEM_GEMM_CACHE", saved, 1) } else { unsetenv("TANDEM_GEMM_CACHE") } }
        setenv("TANDEM_GEMM_CACHE", "none", 1)
        #expect(GEMMTuningRecord.directoryFromEnvironment == nil)
        #expect(GEMMTuningRecord.forDevice("gpu", library: "lt") == nil)
        setenv("TANDEM_GEMM_CACHE", "/tmp/somewhere", 1)
        #expect(GEMMTuningRecord.directoryFromEnvironment == "/tmp/somewhere")
        unsetenv("TANDEM_GEMM_CACHE")
        #expect(GEMMTuningRecord.directoryFromEnvironment?.hasSuffix("/.cache/tandem/gemm") == true)
    }

    @Test("a record written with CRLF line ends reads the same")
    func crlf() throws {
        let path = temporaryDirectory() + "/record.tsv"
        write("# header\r\nNN 1x2x3\t2\tnote\r\nTT 4x4x4\t-1\t\r\n", to: path)
        let record = GEMMTuningRecord(path: path)
        #expect(record.choice("NN 1x2x3") == 2)
        #expect(record.choice("TT 4x4x4") == -1)
        #expect(record.skipped.isEmpty)
    }

    @Test("two processes' records sharing a file keep each other's choices")
    func sharedFile() throws {
        let path = temporaryDirectory() + "/record.tsv"
        let first = GEMMTuningRecord(path: path), second = GEMMTuningRecord(path: path)
        #expect(first.keep("NN 1x1x1", choice: 1, note: "first"))
        #expect(second.keep("NN 2x2x2", choice: 2, note: "second"))   // read before the first wrote
        let merged = GEMMTuningRecord(path: path)
        #expect(merged.choice("NN 1x1x1") == 1)
        #expect(merged.choice("NN 2x2x2") == 2)
    }

    @Test("a cache file's folders: a relative path's from the working directory, never from the root")
    func folders() throws {
        #expect(CacheFile.folders(of: "cache/gemm/x.tsv") == ["./cache", "./cache/gemm"])
        #expect(CacheFile.folders(of: "/tmp/a/x.tsv") == ["/tmp", "/tmp/a"])
        #expect(CacheFile.folders(of: "x.tsv") == [])
        let dir = temporaryDirectory()
        #expect(CacheFile.write(Array("x".utf8), to: dir + "/new/sub/file.txt"))
        #expect(CacheFile.read(dir + "/new/sub/file.txt") == Array("x".utf8))
        #expect(CacheFile.read(dir + "/missing.txt") == nil)
    }}

@Suite("Step schedule")
struct StepScheduleTests {
    @Test("the environment fixes either half of the schedule; unset, both ways are timed")
    func allowed() {
        // The forward's split fixed off here (its own test below).
        func schedules(_ env: [String: String]) -> [String] {
            GPUTrainer.Schedule.allowed(environment: { env.merging(["TANDEM_SPLIT_FORWARD": "0"]) { a, _ in a }[$0] }).map(\.description)
        }
        let all = ", updates deferred into the next forward"
        // Deferral beside the optimizer only when asked for (measured slower).
        #expect(schedules([:]) == ["one stream", "one stream" + all, "optimizer beside", "weight gradients beside", "weight gradients beside" + all,
                                   "weight gradients and optimizer beside"])
        #expect(schedules(["TANDEM_OVERLAP_OPTIMIZER": "1", "TANDEM_DEFER_UPDATES": "1"])
                == ["optimizer beside" + all, "weight gradients and optimizer beside" + all])
        #expect(schedules(["TANDEM_DEFER_UPDATES": "0", "TANDEM_GPU_WGRAD_STREAM": "0"]) == ["one stream", "optimizer beside"])
        #expect(schedules(["TANDEM_OVERLAP_OPTIMIZER": "1", "TANDEM_DEFER_UPDATES": "0"]) == ["optimizer beside", "weight gradients and optimizer beside"])
        #expect(schedules(["TANDEM_GPU_WGRAD_STREAM": "1", "TANDEM_OVERLAP_OPTIMIZER": "0", "TANDEM_DEFER_UPDATES": "0"]) == ["weight gradients beside"])
        #expect(schedules(["TANDEM_GPU_WGRAD_STREAM": "maybe"]).count == 6)
    }

    @Test("weight gradients beside are timed on every multiprocessor and on a share of them; TANDEM_SIDE_SMS fixes the share")
    func shares() {
        func schedules(_ env: [String: String], share: Int = 66) -> [String] {
            GPUTrainer.Schedule.allowed(share: share, environment: { env.merging(["TANDEM_SPLIT_FORWARD": "0"]) { a, _ in a }[$0] }).map(\.description)
        }
        let fixed = ["TANDEM_GPU_WGRAD_STREAM": "1", "TANDEM_OVERLAP_OPTIMIZER": "0", "TANDEM_DEFER_UPDATES": "1"]
        let deferred = ", updates deferred into the next forward"
        #expect(schedules(fixed) == ["weight gradients beside" + deferred, "weight gradients beside (on 66 multiprocessors)" + deferred])
        #expect(schedules(fixed.merging(["TANDEM_SIDE_SMS": "0"]) { $1 }) == ["weight gradients beside" + deferred])
        #expect(schedules(fixed.merging(["TANDEM_SIDE_SMS": "40"]) { $1 }) == ["weight gradients beside (on 40 multiprocessors)" + deferred])
        #expect(schedules(fixed.merging(["TANDEM_SIDE_SMS": "-3"]) { $1 }) == ["weight gradients beside" + deferred])
        // One stream has no side GEMMs to share out; without a share (0) nothing is added.
        #expect(schedules(["TANDEM_GPU_WGRAD_STREAM": "0", "TANDEM_OVERLAP_OPTIMIZER": "0", "TANDEM_DEFER_UPDATES": "0"]) == ["one stream"])
        #expect(schedules([:]).count == 9 && schedules([:], share: 0).count == 6)
        #expect(GPUTrainer.Schedule(weightGradientsBeside: false, optimizerBeside: true, sideMultiprocessors: 66).sideMultiprocessors == 0)
    }

    @Test("the forward in two halves is timed beside each schedule that does not defer updates; TANDEM_SPLIT_FORWARD fixes it")
    func forwardSplit() {
        func schedules(_ env: [String: String]) -> [String] { GPUTrainer.Schedule.allowed(environment: { env[$0] }).map(\.description) }
        let beside = ["TANDEM_GPU_WGRAD_STREAM": "1", "TANDEM_OVERLAP_OPTIMIZER": "0"]
        let split = ", forward in two halves", deferred = ", updates deferred into the next forward"
        #expect(schedules(beside.merging(["TANDEM_DEFER_UPDATES": "0"]) { $1 }) == ["weight gradients beside", "weight gradients beside" + split])
        #expect(schedules(beside) == ["weight gradients beside", "weight gradients beside" + split, "weight gradients beside" + deferred])
        #expect(schedules(beside.merging(["TANDEM_DEFER_UPDATES": "0", "TANDEM_SPLIT_FORWARD": "1"]) { $1 }) == ["weight gradients beside" + split])
        // Deferral keeps the side stream for its updates during the forward: asked for both, the updates are deferred.
        #expect(schedules(beside.merging(["TANDEM_DEFER_UPDATES": "1", "TANDEM_SPLIT_FORWARD": "1"]) { $1 }) == ["weight gradients beside" + deferred])
        #expect(!GPUTrainer.Schedule(weightGradientsBeside: true, optimizerBeside: false, updatesDeferred: true, forwardSplit: true).forwardSplit)
    }

    @Test("the split is taken untimed only where the forward splits and updates could be deferred, TANDEM_SPLIT_FORWARD unset")
    func splitUntimed() {
        func takes(_ split: Bool, _ defer: Bool, _ env: String?) -> Bool {
            GPUTrainer.takesSplitUntimed(canSplit: split, canDefer: `defer`, environment: { $0 == "TANDEM_SPLIT_FORWARD" ? env : nil })
        }
        #expect(takes(true, true, nil) && takes(true, true, "") && takes(true, true, "yes"))
        #expect(!takes(true, true, "0") && !takes(true, true, "1"))
        #expect(!takes(false, true, nil) && !takes(true, false, nil))
    }

    @Test("beside gradient buckets, weight gradients stay on the side stream only on a share of the multiprocessors")
    func weightGradientsBesideBuckets() {
        let shared = GPUTrainer.Schedule(weightGradientsBeside: true, optimizerBeside: false, sideMultiprocessors: 66)
        let all = GPUTrainer.Schedule(weightGradientsBeside: true, optimizerBeside: false)
        let main = GPUTrainer.Schedule(weightGradientsBeside: false, optimizerBeside: false, sideMultiprocessors: 66)
        #expect(GPUTrainer.weightGradientsBeside(shared, bucketing: true) && GPUTrainer.weightGradientsBeside(shared, bucketing: false))
        #expect(!GPUTrainer.weightGradientsBeside(all, bucketing: true) && GPUTrainer.weightGradientsBeside(all, bucketing: false))
        #expect(!GPUTrainer.weightGradientsBeside(main, bucketing: true) && !GPUTrainer.weightGradientsBeside(main, bucketing: false))
    }
}
