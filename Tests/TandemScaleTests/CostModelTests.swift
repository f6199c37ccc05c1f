import TandemParallel
import TandemScale
import Testing

@Suite("All-reduce cost formulas")
struct AllReduceCostTests {
    static let link = Interconnect(alpha: 1e-6, beta: 1e-9)   // 1 µs, 1 GB/s

    @Test func ringByHand() {
        // 2·3·1 µs + 2·3/4 · 1 MB · 1 ns/B = 6 µs + 1.5 ms.
        expectScaleClose(AllReduceAlgorithm.ring(Self.link).seconds(bytes: 1e6, workers: 4), 1.506e-3, tolerance: 1e-15, "ring N=4")
        expectScaleClose(AllReduceAlgorithm.ring(Self.link).seconds(bytes: 1e6, workers: 2), 2e-6 + 1e-3, tolerance: 1e-15, "ring N=2")
    }

    @Test(arguments: [(2, 1), (4, 2), (5, 3), (8, 3), (9, 4), (1024, 10)])
    func treeByHand(workers: Int, levels: Int) {
        // 2⌈log₂N⌉(α + nβ) with n = 1 MB.
        expectScaleClose(AllReduceAlgorithm.tree(Self.link).seconds(bytes: 1e6, workers: workers),
                         2 * Double(levels) * (1e-6 + 1e-3), tolerance: 1e-15, "tree N=\(workers)")
    }

    @Test func hierarchicalByHand() {
        let intra = Interconnect(alpha: 1e-6, beta: 1e-10), inter = Interconnect(alpha: 5e-6, beta: 1e-9)
        let h = AllReduceAlgorithm.hierarchical(workersPerNode: 4, intraNode: intra, interNode: inter)
        // Inside (g = 4): 2·3·1 µs + 2·3/4·1 MB·0.1 ns = 6 µs + 150 µs.
        // Across (M = 2): 2·1·5 µs + 2·1/2·1 MB·1 ns = 10 µs + 1 ms.
        expectScaleClose(h.seconds(bytes: 1e6, workers: 8), 156e-6 + 1010e-6, tolerance: 1e-15, "g=4, M=2")
        // One node: the ring over the fast link; one worker per node: the ring over the slow one.
        expectScaleClose(h.seconds(bytes: 1e6, workers: 4), AllReduceAlgorithm.ring(intra).seconds(bytes: 1e6, workers: 4),
                         tolerance: 1e-18, "M = 1")
        let flat = AllReduceAlgorithm.hierarchical(workersPerNode: 1, intraNode: intra, interNode: inter)
        expectScaleClose(flat.seconds(bytes: 1e6, workers: 16), AllReduceAlgorithm.ring(inter).seconds(bytes: 1e6, workers: 16),
                         tolerance: 1e-18, "g = 1")
    }

    @Test func parameterServerByHand() {
        // 2(α + max(1, N/S)·nβ): N = 8 on 2 servers is 4 MB through each server's link per phase.
        expectScaleClose(AllReduceAlgorithm.parameterServer(servers: 2, link: Self.link).seconds(bytes: 1e6, workers: 8),
                         2 * (1e-6 + 4e-3), tolerance: 1e-15, "S = 2")
        expectScaleClose(AllReduceAlgorithm.parameterServer(servers: 16, link: Self.link).seconds(bytes: 1e6, workers: 8),
                         2 * (1e-6 + 1e-3), tolerance: 1e-15, "S > N: the worker's own link")
    }

    @Test func oneWorkerCostsNothing() {
        let all: [AllReduceAlgorithm] = [.ring(Self.link), .tree(Self.link),
                                         .hierarchical(workersPerNode: 8, intraNode: .nvlink4, interNode: .infinibandNDR400),
                                         .parameterServer(servers: 1, link: Self.link)]
        for a in all { #expect(a.seconds(bytes: 1e9, workers: 1) == 0, "\(a.name)") }
    }

    @Test func presetsAreTheDocumentedRates() {
        #expect(Interconnect.nvlink4.bandwidth == 450e9 && Interconnect.nvlink4.latency == 3e-6)
        #expect(Interconnect.pcie5x16.bandwidth == 63e9)
        #expect(Interconnect.infinibandNDR400.bandwidth == 50e9 && Interconnect.infinibandNDR400.latency == 1.5e-6)
        #expect(Interconnect.ethernet100G.bandwidth == 12.5e9 && Interconnect.ethernet100G.latency == 10e-6)
        #expect(Interconnect.ethernet25G.bandwidth == 3.125e9 && Interconnect.ethernet25G.latency == 15e-6)
        #expect(Interconnect.presets.map(\.bandwidth) == Interconnect.presets.map(\.bandwidth).sorted(by: >))
        expectScaleClose(Interconnect(alpha: 2e-6, beta: 1e-10).bandwidth, 1e10, tolerance: 1e-3, "1/β")
        expectScaleClose(Self.link.messageSeconds(bytes: 1000), 2e-6, tolerance: 1e-18, "α + nβ")
    }
}

@Suite("CostModel")
struct CostModelTests {
    /// 1 ms per sample, 2/3 of it backward; 1 MB of gradient; ring with a = 0.2 ms, b = 10 ns/B at N = 2.
    static func model(buckets: Int? = nil, overlappable: Double = 1) -> CostModel {
        CostModel(computeSecondsPerSample: 1e-3, fixedSecondsPerStep: 0, backwardFraction: 2.0 / 3, overlappableFraction: overlappable,
                  gradientBytes: 1_000_000, algorithm: .ring(Interconnect(alpha: 1e-4, beta: 1e-8)), bucketBytes: buckets)
    }

    @Test func bucketedOverlapByHand() {
        // One bucket: T = 2·1·0.1 ms + 2·1/2·1 MB·10 ns = 10.2 ms, none of it hidden.
        let whole = Self.model()
        expectScaleClose(whole.communicationSeconds(workers: 2), 10.2e-3, tolerance: 1e-15, "T")
        expectScaleClose(whole.stepSeconds(workers: 2, batchPerWorker: 30), 40.2e-3, tolerance: 1e-15, "30 ms + 10.2 ms")
        // Four buckets of 250 kB: c = 0.2 + 2.5 = 2.7 ms, T = 10.8 ms; backward 20 ms hides all but the last.
        let four = Self.model(buckets: 250_000)
        #expect(four.bucketCount == 4)
        expectScaleClose(four.communicationSeconds(workers: 2), 10.8e-3, tolerance: 1e-15, "T")
        expectScaleClose(four.exposedCommunicationSeconds(workers: 2, batchPerWorker: 30), 2.7e-3, tolerance: 1e-15, "last bucket")
        // Batch 6: backward 4 ms hides 4·3/4 = 3 ms of 10.8.
        expectScaleClose(four.exposedCommunicationSeconds(workers: 2, batchPerWorker: 6), 7.8e-3, tolerance: 1e-15, "T − W(k−1)/k")
        // Half of backward overlappable at batch 30: 10.8 − 10·3/4 = 3.3 ms.
        expectScaleClose(Self.model(buckets: 250_000, overlappable: 0.5).exposedCommunicationSeconds(workers: 2, batchPerWorker: 30),
                         3.3e-3, tolerance: 1e-15, "f = 0.5")
        #expect(four.exposedCommunicationSeconds(workers: 1, batchPerWorker: 30) == 0)
    }

    /// The reference: buckets ready evenly over the last W of backward, sent one after another.
    static func simulatedExposed(buckets k: Int, perBucket c: Double, backward b: Double, window w: Double) -> Double {
        var finish = 0.0
        for i in 1...k {
            let ready = b - w + Double(i) * w / Double(k)
            finish = max(finish, ready) + c
        }
        return finish - b
    }

    @Test(arguments: [1, 2, 3, 8, 50], [0.0, 0.3, 1.0])
    func closedFormMatchesThePipeline(buckets: Int, overlappable: Double) {
        for batch in [1.0, 5, 30, 300] {
            let m = Self.model(buckets: (1_000_000 + buckets - 1) / buckets, overlappable: overlappable)
            #expect(m.bucketCount == buckets)
            let cost = m.algorithm.cost(workers: 2)
            let expected = Self.simulatedExposed(buckets: buckets, perBucket: cost.seconds(bytes: 1e6 / Double(buckets)),
                                                 backward: 2.0 / 3 * batch * 1e-3, window: overlappable * 2.0 / 3 * batch * 1e-3)
            expectScaleClose(m.exposedCommunicationSeconds(workers: 2, batchPerWorker: batch), expected, tolerance: 1e-12,
                             relative: true, "k=\(buckets), f=\(overlappable), b=\(batch)")
        }
    }

    @Test func powersOfTwo() {
        #expect(CostModel.powersOfTwo(upTo: 4096).count == 13 && CostModel.powersOfTwo().last == 4096)
        #expect(CostModel.powersOfTwo(upTo: 5) == [1, 2, 4] && CostModel.powersOfTwo(upTo: 1) == [1])
    }

    @Test func predictWeakScaling() throws {
        let m = Self.model(buckets: 250_000)
        let p = m.predict(workers: [4, 1, 2], batch: .perWorker(30))
        #expect(p.map(\.workers) == [1, 2, 4])
        #expect(p[0].speedup == 1 && p[0].efficiency == 1 && p[0].exposedCommunicationSeconds == 0)
        // N = 2: 30 ms + 2.7 ms; throughput 60 / 32.7 ms.
        expectScaleClose(p[1].stepSeconds, 32.7e-3, tolerance: 1e-15, "step(2)")
        expectScaleClose(p[1].throughput, 60 / 32.7e-3, tolerance: 1e-12, relative: true, "X(2)")
        expectScaleClose(p[1].efficiency, 30 / 32.7, tolerance: 1e-12, "E(2)")
        let all = m.predict(batch: .perWorker(30))
        #expect(all.count == 13)
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.efficiency >= $1.efficiency }, "ring efficiency falls with N")
    }

    @Test func predictStrongScaling() {
        let m = Self.model()
        let p = m.predict(workers: [1, 2, 4, 8], batch: .global(4))
        #expect(p.map(\.workers) == [1, 2, 4], "8 workers cannot split 4 samples")
        #expect(p.map(\.batchPerWorker) == [4, 2, 1])
        // step(1) = 4 ms; step(2) = 2 ms + 10.2 ms.
        expectScaleClose(p[1].speedup, 4 / 12.2, tolerance: 1e-12, "S(2) = step(1)/step(2)")
    }

    @Test func kneeAgreesWithThePredictions() throws {
        let m = CostModel(computeSecondsPerSample: 1e-4, fixedSecondsPerStep: 1e-3, gradientBytes: 100_000_000,
                          algorithm: .ring(.infinibandNDR400), bucketBytes: 25_000_000)
        let predictions = m.predict(batch: .perWorker(256))
        let knee = try #require(m.knee(batch: .perWorker(256)))
        let at = try #require(predictions.first { $0.workers == knee.workers })
        #expect(at.efficiency >= 0.9)
        if let failing = knee.firstFailingWorkers {
            let next = try #require(predictions.first { $0.workers == failing })
            #expect(next.efficiency < 0.9 || next.throughput / at.throughput - 1 < 0.1)
        }
    }

    @Test func batchForIsTheSmallestThatReachesTheTarget() throws {
        let m = Self.model(buckets: 250_000)
        for target in [0.5, 0.8, 0.9, 0.95] {
            for workers in [2, 16, 256] {
                let choice = try #require(m.batchFor(efficiency: target, workers: workers))
                let e = { (b: Int) in m.predict(workers: [1, workers], batch: .perWorker(b)).last!.efficiency }
                #expect(e(choice.batchPerWorker) >= target, "target \(target) at \(workers)")
                if choice.batchPerWorker > 1 { #expect(e(choice.batchPerWorker - 1) < target, "target \(target) at \(workers)") }
                #expect(choice.globalBatch == choice.batchPerWorker * workers)
                expectScaleClose(choice.efficiency, e(choice.batchPerWorker), "reported efficiency")
            }
        }
        #expect(m.batchFor(efficiency: 0.99, workers: 64, maximumBatchPerWorker: 16) == nil)
    }

    @Test func bucketForFindsTheBestBucketCount() throws {
        let m = Self.model()
        let choice = try #require(m.bucketFor(efficiency: 0.9, workers: 2, batchPerWorker: 30, maximumBuckets: 200))
        // k buckets: exposed = max(c, T − 20 ms·(k−1)/k), c = 0.2 ms + 10 ms/k, T = 0.2k ms + 10 ms.
        let exposed = { (k: Double) in max(0.2e-3 + 10e-3 / k, 0.2e-3 * k + 10e-3 - 20e-3 * (k - 1) / k) }
        let best = (1...200).min { exposed(Double($0)) < exposed(Double($1)) }!
        #expect(choice.bucketCount == best)
        expectScaleClose(choice.efficiency, 30e-3 / (30e-3 + exposed(Double(best))), tolerance: 1e-12, "E")
        #expect(choice.feasibleBucketBytes.contains(choice.bucketBytes))
        #expect(m.bucketFor(efficiency: 0.999, workers: 2, batchPerWorker: 30) == nil, "the last bucket always shows")
    }
}

@Suite("Calibration")
struct CalibrationTests {
    @Test func fromAOneWorkerRun() throws {
        let run = ScaleFixture.run(workers: 1, batch: 64, samplesPerSecond: 3200, stepMs: 20, extra: """
            , "breakdown_ms": {"data": 0, "forward": 6, "backward": 12, "comm_exposed": 0, "optimizer": 2}
            """)
        let c = try Calibration(baseline: run)
        expectScaleClose(c.computeSecondsPerSample, 18e-3 / 64, tolerance: 1e-18, "(step − optimizer)/batch")
        expectScaleClose(c.fixedSecondsPerStep, 2e-3, tolerance: 1e-18, "optimizer")
        expectScaleClose(c.backwardFraction, 2.0 / 3, "backward share")
        #expect(c.gradientBytes == 4000, "1,000 fp32 parameters")
        let bare = try Calibration(baseline: ScaleFixture.run(workers: 1, samplesPerSecond: 3200, stepMs: 20), bytesPerGradientElement: 2)
        #expect(bare.fixedSecondsPerStep == 0 && bare.backwardFraction == 2.0 / 3 && bare.gradientBytes == 2000)
    }

    @Test func rejectsRunsThatCannotCalibrate() {
        #expect(throws: CalibrationError.self) { try Calibration(baseline: ScaleFixture.run(workers: 2, samplesPerSecond: 1, stepMs: 1)) }
        let slowOptimizer = ScaleFixture.run(workers: 1, samplesPerSecond: 1, stepMs: 1, extra: """
            , "breakdown_ms": {"data": 0, "forward": 1, "backward": 1, "comm_exposed": 0, "optimizer": 5}
            """)
        #expect(throws: CalibrationError.self) { try Calibration(baseline: slowOptimizer) }
    }

    @Test func linkFromBusBandwidthAndSmallMessageTime() throws {
        let (alpha, beta) = (5e-6, 1 / 10e9)
        // 8 bytes over 4 workers: 2·3·α + 2·3/4·8·β.
        let t = 6 * alpha + 1.5 * 8 * beta
        let link = try Calibration.interconnect(busBandwidthGBps: 10, smallMessageSeconds: t, smallMessageBytes: 8, workers: 4)
        expectScaleClose(link.alpha, alpha, tolerance: 1e-12, relative: true, "α")
        expectScaleClose(link.beta, beta, tolerance: 1e-12, relative: true, "β")
        #expect(throws: CalibrationError.self) { try Calibration.interconnect(busBandwidthGBps: 10, smallMessageSeconds: 1e-6, workers: 1) }
    }

    static func ringSamples(alpha: Double, beta: Double, noise: Double = 0, seed: UInt64 = 1) -> [CollectiveSample] {
        var random = ScaleRandom(seed: seed)
        return [2, 4, 8].flatMap { n in
            stride(from: 3, through: 28, by: 1).map { e -> CollectiveSample in
                let bytes = 1 << e
                let t = AllReduceAlgorithm.ring(Interconnect(alpha: alpha, beta: beta)).seconds(bytes: Double(bytes), workers: n)
                return CollectiveSample(workers: n, bytes: bytes, seconds: t * (1 + noise * random.normal()))
            }
        }
    }

    @Test(arguments: [(7e-6, 1 / 12e9), (1.5e-6, 1 / 50e9), (40e-6, 1 / 1e9)])
    func fitRecoversAlphaAndBeta(alpha: Double, beta: Double) throws {
        let link = try Calibration.interconnect(samples: Self.ringSamples(alpha: alpha, beta: beta))
        expectScaleClose(link.alpha, alpha, tolerance: 1e-9, relative: true, "α")
        expectScaleClose(link.beta, beta, tolerance: 1e-9, relative: true, "β")
        let noisy = try Calibration.interconnect(samples: Self.ringSamples(alpha: alpha, beta: beta, noise: 0.02, seed: 7))
        expectScaleClose(noisy.alpha, alpha, tolerance: 0.05, relative: true, "α under 2% noise")
        expectScaleClose(noisy.beta, beta, tolerance: 0.05, relative: true, "β under 2% noise")
    }

    @Test func fitNeedsTwoSizes() {
        let one = [CollectiveSample(workers: 4, bytes: 1024, seconds: 1e-5), CollectiveSample(workers: 4, bytes: 1024, seconds: 1.1e-5)]
        #expect(throws: CalibrationError.self) { try Calibration.interconnect(samples: one) }
        #expect(throws: CalibrationError.self) { try Calibration.interconnect(samples: []) }
    }

    /// Calibrate from a synthetic one-worker run and comm samples at N ≤ 8 made by a known
    /// machine, then predict N = 16 … 1024, which the calibration never saw.
    @Test(arguments: [UInt64(1), 2, 3])
    func predictionsMatchHeldOutPoints(seed: UInt64) throws {
        let truth = CostModel(computeSecondsPerSample: 2.5e-4, fixedSecondsPerStep: 1.5e-3, backwardFraction: 0.65,
                              gradientBytes: 4 * 27_443_200, algorithm: .ring(Interconnect(alpha: 8e-6, beta: 1 / 11e9)),
                              bucketBytes: 25 << 20)
        let batch = 64
        let step1 = truth.stepSeconds(workers: 1, batchPerWorker: Double(batch))
        let compute = truth.computeSeconds(batchPerWorker: Double(batch)) * 1000
        let run = ScaleFixture.run(model: "gpt", workers: 1, batch: batch, samplesPerSecond: Double(batch) / step1, stepMs: step1 * 1000,
                                   extra: """
                                       , "breakdown_ms": {"data": 0, "forward": \(compute * 0.35), "backward": \(compute * 0.65), \
                                       "comm_exposed": 0, "optimizer": 1.5}
                                       """)
        var calibration = try Calibration(baseline: run)
        calibration.gradientBytes = truth.gradientBytes
        let link = try Calibration.interconnect(samples: Self.ringSamples(alpha: 8e-6, beta: 1 / 11e9, noise: 0.005, seed: seed))
        let model = CostModel(calibration: calibration, algorithm: .ring(link), bucketBytes: 25 << 20)
        let heldOut = [16, 32, 64, 128, 256, 512, 1024]
        let predicted = model.predict(workers: heldOut, batch: .perWorker(batch))
        let actual = truth.predict(workers: heldOut, batch: .perWorker(batch))
        expectScaleClose(predicted.map(\.throughput), actual.map(\.throughput), tolerance: 0.01, relative: true, "throughput")
        expectScaleClose(predicted.map(\.efficiency), actual.map(\.efficiency), tolerance: 0.01, relative: true, "efficiency")
    }
}

extension AllReduceCostTests {
    @Test func namesForTables() {
        #expect(Interconnect.nvlink4.description == "NVLink 4 (α 3 µs, 450 GB/s)")
        #expect(Interconnect.pcie5x16.description == "PCIe 5.0 x16 (α 5 µs, 63 GB/s)")
        #expect(AllReduceAlgorithm.hierarchical(workersPerNode: 8, intraNode: .nvlink4, interNode: .infinibandNDR400).name
                    == "hierarchical (8 per node, NVLink 4 inside, InfiniBand NDR 400G across)")
    }
}
