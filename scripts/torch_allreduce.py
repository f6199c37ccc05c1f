#!/usr/bin/env python3
"""All-reduce bandwidth of torch.distributed over NCCL, in `tandem comm --json`'s schema.

    python3 scripts/torch_allreduce.py --gpus 2 --min-bytes 4096 --max-bytes 268435456

One process per GPU (torch.multiprocessing spawn), float32 sum in place, sizes ×4 from
--min-bytes to --max-bytes; per size: a warm-up, then the median of --repeats rounds of
--iterations back-to-back all-reduces timed with CUDA events. busbw = algbw·2(N−1)/N
(nccl-tests). Rank 0 prints one JSON line per size.
"""
import argparse, json, os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, a):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=a.gpus)
    n = a.gpus
    size = a.min_bytes
    while size <= a.max_bytes:
        x = torch.ones(max(1, size // 4), device="cuda")
        dist.all_reduce(x)
        torch.cuda.synchronize()
        assert float(x[0]) == n, f"all-reduce of ones gave {float(x[0])}, expected {n}"
        rounds = []
        for _ in range(a.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(a.iterations):
                dist.all_reduce(x)
            end.record()
            torch.cuda.synchronize()
            rounds.append(start.elapsed_time(end) * 1000 / a.iterations)
        us = sorted(rounds)[len(rounds) // 2]
        algbw = 4 * x.numel() / (us * 1e-6) / 1e9
        if rank == 0:
            print(json.dumps(dict(engine="pytorch", operation="all-reduce", workers=n, bytes=4 * x.numel(), microseconds=us,
                                  algbw_gbps=algbw, busbw_gbps=algbw * 2 * (n - 1) / n if n > 1 else algbw)), flush=True)
        size *= 4
    dist.destroy_process_group()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    p.add_argument("--min-bytes", type=int, default=4096)
    p.add_argument("--max-bytes", type=int, default=256 << 20)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--port", type=int, default=29633)
    a = p.parse_args()
    mp.spawn(worker, args=(a,), nprocs=a.gpus, join=True)
