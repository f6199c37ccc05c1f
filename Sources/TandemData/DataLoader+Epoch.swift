import TandemCore

// MARK: - One epoch of batches

extension DataLoader {
    /// The batches of one epoch, in order; a sequence that can be iterated once.
    ///
    /// With a prefetch depth above 0, a producer thread starts when the epoch is made and
    /// gathers batches into a queue of that depth. The thread ends after the last batch,
    /// or when the epoch is cancelled or released, which join it, so an epoch abandoned
    /// half way leaves nothing running.
    public final class Epoch: Sequence, IteratorProtocol {
        /// The epoch number.
        public let epoch: Int
        /// Index in the epoch of the batch `next()` returns.
        public private(set) var batchIndex: Int
        /// Index in the epoch one past the last batch.
        public let endIndex: Int

        private let dataset: Dataset
        private let meter: WaitMeter
        /// Batches left to gather on this thread (no prefetch, or no thread could start).
        private var pending: ArraySlice<[Int]>
        private var queue: BoundedQueue<PreparedBatch>?
        private var thread: WorkerThread?
        private var done = false

        init(
            epoch: Int, plan: ArraySlice<[Int]>, firstBatch: Int, dataset: Dataset, prefetch: Int, meter: WaitMeter
        ) {
            self.epoch = epoch
            self.batchIndex = firstBatch
            self.endIndex = firstBatch + plan.count
            self.dataset = dataset
            self.meter = meter
            self.pending = plan
            guard prefetch > 0, !plan.isEmpty else { return }
            let queue = BoundedQueue<PreparedBatch>(capacity: prefetch)
            let batches = Array(plan)
            let thread = WorkerThread {
                for indices in batches {
                    guard queue.push(dataset.prepare(indices: indices)) else { break }
                }
                queue.finish()
            }
            if let thread {
                self.queue = queue
                self.thread = thread
                self.pending = []
            }
            // Otherwise no thread could be made: gather on the consumer's thread instead.
        }

        deinit { cancel() }

        /// The next batch, waiting for it if the producer is behind; `nil` after the last.
        public func next() -> DataBatch? {
            if done { return nil }
            let prepared: PreparedBatch? = meter.measure {
                if let queue { return queue.pop() }
                return pending.popFirst().map { dataset.prepare(indices: $0) }
            }
            guard let prepared else {
                finish()
                return nil
            }
            batchIndex += 1
            return prepared.batch
        }

        /// Stops the producer and joins its thread; `next()` returns `nil` from now on.
        public func cancel() {
            queue?.cancel()
            finish()
        }

        private func finish() {
            done = true
            thread?.join()
            thread = nil
            queue = nil
            pending = []
        }
    }
}
