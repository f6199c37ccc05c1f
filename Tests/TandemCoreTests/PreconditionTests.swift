import TandemCore
import Testing

// MARK: - Caller bugs stop the process

/// Shape errors are caller bugs: a `precondition` with a sentence, checked here in exit
/// tests (debug builds; `-Ounchecked` release builds drop these checks).
@Suite("Preconditions")
struct PreconditionTests {
    @Test("adding shapes that do not broadcast stops")
    func broadcastMismatch() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor(zeros: [3]) + Tensor(zeros: [4])
        }
    }

    @Test("backward from a tensor the tape did not record stops")
    func untrackedLoss() async {
        await #expect(processExitsWith: .failure) {
            Tape().backward(Tensor(scalar: 1))
        }
    }

    @Test("linear with a weight of the wrong width stops")
    func linearMismatch() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.linear(Tensor(zeros: [2, 3]), weight: Tensor(zeros: [4, 5]), bias: nil)
        }
    }

    @Test("crossEntropy with a label out of range stops")
    func labelOutOfRange() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.crossEntropy(logits: Tensor(zeros: [2, 3]), labels: [0, 3])
        }
    }
}
