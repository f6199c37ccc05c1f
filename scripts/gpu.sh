#!/usr/bin/env bash
# GPU checks and benchmark on a host with an NVIDIA GPU (no Swift toolchain needed there: carry a
# binary built with `swift build -c release --static-swift-stdlib`).
#   bash scripts/gpu.sh [TANDEM_BINARY] [TORCH_BENCH] [OUT_DIR]
# 1. tandem doctor --measure: the CUDA libraries found and the card's ceilings (GEMM fp32/tf32/bf16, copy)
# 2. tandem selftest --device cuda: every GPU op and training step against its CPU twin (non-zero exit on failure)
# 3. tandem train --device cuda on datasets/digits (real data; the models take the data's widths)
# 4. the GPU benchmark side by side with torch_bench.py --device cuda --graph (fp32 and bf16, alternating, medians;
#    in fp32 also PyTorch with tf32 off in cuDNN, whose default lets convolutions and RNNs use tf32)
# REPEATS=N: the benchmark's alternating runs (3). SELFTEST=0 leaves out step 2, when the same binary's self-test ran
# in an earlier call (it takes ~110 s of a call's 600).
set -uo pipefail
TANDEM=${1:-.gpu/tandem}
TORCH_BENCH=${2:-.gpu/torch_bench.py}
OUT=${3:-${OUT:-gpu-results}}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
status=0
nvidia-smi -L 2>/dev/null || true
echo "== doctor"
"$TANDEM" doctor --measure 2>&1 | tee "$OUT/doctor.txt"
if [ "${SELFTEST:-1}" != 0 ]; then
    echo "== selftest"
    "$TANDEM" selftest --device cuda 2>&1 | tee "$OUT/selftest.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "selftest FAILED"; status=1; }
fi
echo "== training on real data (models of the data's own widths, eager and graph-captured)"
DIGITS="$(dirname "$0")/../datasets/digits"
for args in "--model mlp" "--model mlp --graph --precision bf16" "--model cnn"; do
    "$TANDEM" train --device cuda $args --data "$DIGITS" --eval-fraction 0.2 --epochs 5 --batch 64 2>&1 | tail -2 | tee -a "$OUT/train.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "train $args FAILED"; status=1; }
done
echo "== benchmark (Tandem vs PyTorch, CUDA graphs)"
python3 "$(dirname "$0")/bench_gpu.py" --tandem "$TANDEM" --torch-bench "$TORCH_BENCH" --out "$OUT" --repeats "$REPEATS" --torch-ieee \
    ${MODELS:+--models "$MODELS"} 2>&1 | tee "$OUT/bench.txt"
exit $status
