import TandemCore
import TandemNN
import TandemModels

// MARK: - Evaluation

public enum Evaluation {
    /// Mean loss and accuracy (classifiers) of `model` over `batches`, without recording.
    public static func run(_ model: any Model, _ batches: [Batch]) -> (loss: Double, accuracy: Double?) {
        var lossSum = 0.0, rows = 0, correct = 0, classified = 0
        for batch in batches {
            let output = model.forward(batch.inputs)
            switch batch.targets {
            case .classes(let labels):
                let logits = output.reshaped([-1, output.shape.last!])
                lossSum += Double(Tensor.crossEntropy(logits: logits, labels: labels).item) * Double(labels.count)
                rows += labels.count
                let c = logits.shape[1]
                for (r, label) in labels.enumerated() {
                    let row = logits.pointer + r * c
                    var best = 0
                    for j in 1..<c where row[j] > row[best] { best = j }
                    if best == Int(label) { correct += 1 }
                }
                classified += labels.count
            case .values(let values):
                lossSum += Double(Tensor.meanSquaredError(output, values).item) * Double(batch.size)
                rows += batch.size
            }
        }
        return (lossSum / Double(max(rows, 1)), classified > 0 ? Double(correct) / Double(classified) : nil)
    }
}
