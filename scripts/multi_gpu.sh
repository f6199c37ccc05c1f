#!/usr/bin/env bash
# Multi-GPU checks and benchmarks on one host with several NVIDIA GPUs (issue 7). Carry a binary
# built with `swift build -c release --static-swift-stdlib`; no Swift toolchain is needed there.
#   bash scripts/multi_gpu.sh [TANDEM_BINARY] [TORCH_BENCH] [OUT_DIR]
# GPUS (default: every GPU, as 1,2,…,N in powers of two), MODELS, PRECISIONS, REPEATS, STEPS
# choose the benchmark's size.
# 1. the same samples on N GPUs (batch B each, cyclic shards) and on one GPU (batch N·B): the
#    weights after 30 steps, fp32 and bf16, compared tensor by tensor (scripts/compare_weights.py)
# 2. Tandem over NCCL against PyTorch DDP over NCCL, weak scaling, alternating (bench_nccl.py),
#    and the all-reduce busbw of both on the same sizes
# 3. tandem scale --backend nccl over the GPU counts, with its report
set -uo pipefail
TANDEM=${1:-.gpu/tandem}
TORCH_BENCH=${2:-.gpu/torch_bench.py}
OUT=${3:-${OUT:-multi-gpu-results}}
HERE=$(dirname "$0")
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p "$OUT"
status=0
nvidia-smi -L 2>/dev/null | tee "$OUT/gpus.txt"
count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || echo 1)
if [ -z "${GPUS:-}" ]; then
    GPUS=1; g=2
    while [ "$g" -le "$count" ]; do GPUS="$GPUS,$g"; g=$((g * 2)); done
fi
widest=${GPUS##*,}
echo "== GPUs: $count on this host; runs on $GPUS"

echo "== the same samples on $widest GPUs and on one"
for precision in fp32 bf16; do
    tolerance=$([ "$precision" = fp32 ] && echo 1e-4 || echo 3e-2)
    common=(train --device cuda --model mlp --data datasets/digits --steps 30 --shard cyclic --seed 7 --precision "$precision" --quiet)
    timeout 60 "$TANDEM" "${common[@]}" --batch $((64 * widest)) --save "$OUT/one-$precision.safetensors" > "$OUT/one-$precision.txt" 2>&1
    # 1 MiB gradient buckets, so that the all-reduces started during backward are what is checked.
    timeout 60 "$TANDEM" launch --gpus "$widest" -- "$TANDEM" "${common[@]}" --backend nccl --batch 64 --bucket-mb 1 \
        --save "$OUT/many-$precision.safetensors" > "$OUT/many-$precision.txt" 2>&1
    if python3 "$HERE/compare_weights.py" "$OUT/one-$precision.safetensors" "$OUT/many-$precision.safetensors" \
        --tolerance "$tolerance" > "$OUT/compare-$precision.txt" 2>&1; then
        echo "$precision: $(tail -1 "$OUT/compare-$precision.txt")"
    else
        echo "$precision: FAILED: $(tail -3 "$OUT/compare-$precision.txt" "$OUT/many-$precision.txt" | tr '\n' ' ')"; status=1
    fi
done

echo "== Tandem over NCCL against PyTorch DDP over NCCL"
timeout "${BENCH_TIMEOUT:-420}" python3 "$HERE/bench_nccl.py" --tandem "$TANDEM" --torch-bench "$TORCH_BENCH" --gpus "$GPUS" \
    --models "${MODELS:-mlp-wide,gpt}" --precisions "${PRECISIONS:-fp32,bf16}" --repeats "${REPEATS:-2}" \
    --steps "${STEPS:-30}" --warmup 5 --raw "$OUT/bench-raw.jsonl" 2>&1 | tee "$OUT/bench.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "bench_nccl.py FAILED or timed out"; status=1; }

echo "== tandem scale --backend nccl"
timeout "${SCALE_TIMEOUT:-150}" "$TANDEM" scale --backend nccl --model mlp-wide --precision bf16 --graph --repeats 2 \
    --workers "$GPUS" --out "$OUT/scale" 2>&1 | tee "$OUT/scale.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "scale FAILED or timed out"; status=1; }
exit $status
