import TandemParallel

// MARK: - Resuming on a different number of workers

extension Train {
    /// Where this rank's data stream resumes: the checkpoint's position, in batches per rank,
    /// rescaled so the run continues after the same number of samples when the number of
    /// workers (threads or MPI processes) differs from the checkpoint's. The sampler then
    /// re-shards the data over the new workers (same seed and epoch, so the same order).
    func resharded(_ checkpoint: Checkpoint, rank: Int) -> Int {
        guard checkpoint.workers != workers else { return checkpoint.batchesDrawn }
        let drawn = checkpoint.batchesDrawn * checkpoint.workers / workers
        if rank == 0 && !quiet {
            printError("resuming a checkpoint of \(checkpoint.workers) worker\(checkpoint.workers == 1 ? "" : "s") on \(workers): data re-sharded, \(checkpoint.batchesDrawn) batches per worker become \(drawn)")
        }
        return drawn
    }
}
