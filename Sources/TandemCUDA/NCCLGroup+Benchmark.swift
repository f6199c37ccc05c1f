// MARK: - All-reduce bandwidth over NCCL

extension NCCLGroup {
    /// One message size's timing: the median of `repeats` rounds of `iterations` back-to-back
    /// all-reduces, queued in stream order on the GPU's stream and timed with device events.
    public struct AllReduceTiming: Sendable {
        public var bytes: Int
        public var microseconds: Double
        /// bytes / time (GB/s, 10⁹ bytes per second).
        public var algbw: Double
        /// algbw · 2(N − 1)/N, the nccl-tests definition: comparable across N.
        public var busbw: Double
    }

    /// Times float32 all-reduces (sum) of each of `sizes` bytes on every rank (all ranks call
    /// it together). The buffer is filled with ones, so a wrong sum would show as a value
    /// other than N in the check that follows each size.
    public func timeAllReduce(sizes: [Int], iterations: Int = 20, repeats: Int = 5) throws -> [AllReduceTiming] {
        precondition(iterations > 0 && repeats > 0, "iterations and repeats are positive")
        guard let largest = sizes.max(), largest > 0 else { return [] }
        let buffer = try gpu.allocate(bytes: largest, category: .workspace)
        defer { gpu.free(buffer) }
        var rows: [AllReduceTiming] = []
        for bytes in sizes {
            let count = max(1, bytes / 4)
            try gpu.fill(buffer, words: count, pattern: 0x3f80_0000)   // 1.0f
            // One all-reduce on ones (sum) must give N everywhere.
            try allReduceInStream([.device(buffer, count: count)], operation: .sum, stream: gpu.stream)
            try watch(stream: gpu.stream)
            let check = try gpu.downloadFloats(buffer, count: min(count, 4096))
            try checkHealth()
            guard check.allSatisfy({ $0 == Float(size) }) else {
                throw CUDAError.unsupported("NCCL all-reduce of \(bytes) bytes gave \(check.first { $0 != Float(size) }!) where \(size) was expected")
            }
            try allReduceInStream([.device(buffer, count: count)], operation: .average, stream: gpu.stream)   // warm-up
            var rounds: [Double] = []
            for _ in 0..<repeats {
                let ms = try gpu.time {
                    for _ in 0..<iterations {
                        try allReduceInStream([.device(buffer, count: count)], operation: .average, stream: gpu.stream)
                    }
                    try watch(stream: gpu.stream)
                }
                try checkHealth()
                rounds.append(ms * 1000 / Double(iterations))
            }
            let microseconds = rounds.sorted()[rounds.count / 2]
            let algbw = Double(4 * count) / (microseconds * 1e-6) / 1e9
            rows.append(AllReduceTiming(bytes: 4 * count, microseconds: microseconds, algbw: algbw,
                                        busbw: size > 1 ? algbw * 2 * Double(size - 1) / Double(size) : algbw))
        }
        return rows
    }
}
