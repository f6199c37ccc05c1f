// MARK: - Train / evaluation split

extension Dataset {
    /// Splits the samples at random into a training set and an evaluation set.
    ///
    /// A permutation drawn from `seed` picks `round(evalFraction × count)` samples (at least
    /// one when `evalFraction > 0`) for evaluation; the rest train. Each part keeps the
    /// samples in their original order. The same seed gives the same split on every rank
    /// and every run.
    ///
    /// ```swift
    /// let (train, eval) = try digits.split(evalFraction: 0.2, seed: 42)   // 1438 and 359 samples
    /// ```
    ///
    /// - Throws: `DataError` when `evalFraction` is not in `[0, 1)` or the split would leave
    ///   no training samples.
    public func split(evalFraction: Double, seed: UInt64) throws -> (train: Dataset, eval: Dataset) {
        guard evalFraction.isFinite, evalFraction >= 0, evalFraction < 1 else {
            throw DataError(source: source, message: "evaluation fraction \(evalFraction), expected a number in [0, 1)")
        }
        let evalCount = evalFraction > 0 ? Swift.max(1, Int((evalFraction * Double(count)).rounded())) : 0
        guard evalCount < count else {
            throw DataError(
                source: source,
                message: "splitting \(count) samples with evaluation fraction \(evalFraction) leaves no training samples, expected at least 1")
        }
        let order = Shuffle.permutation(count: count, seed: seed)
        let eval = order[..<evalCount].sorted()
        let train = order[evalCount...].sorted()
        return (subset(indices: train), subset(indices: eval))
    }
}
