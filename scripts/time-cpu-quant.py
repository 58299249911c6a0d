"""Time the native CPU quantization kernels on 4096x4096 (the ANCHORS.md CPU cases).

Usage: uv run python scripts/time-cpu-quant.py [--simd scalar|avx2|avx512] [--reps N]
Prints, per op, the median and the best wall time with torch's thread count, and the best
CPU time with one thread (steadier when other work shares the machine). Calls without
``.out`` include allocating their output, as a user's call does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bnb_kernels.backends.cpu import quant as cpu
from bnb_quant.codebooks import create_dynamic_map


def wall_ms(fn, reps: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def cpu_ms_one_thread(fn, reps: int) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            times.append((time.process_time() - t0) * 1e3)
        return min(times)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simd", default=None)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    w_bf16 = torch.randn(4096, 4096, dtype=torch.bfloat16)
    w_f32 = torch.randn(4096, 4096, dtype=torch.float32)
    code = create_dynamic_map()
    simd = args.simd
    packed, absmax4 = cpu.quantize_4bit_impl(w_bf16, 64, "nf4", torch.uint8, simd=simd)
    codes, absmax8 = cpu.quantize_blockwise_impl(w_f32, code, 256, simd=simd)
    out_bf16 = torch.empty(4096, 4096, dtype=torch.bfloat16)
    out_f32 = torch.empty(4096, 4096, dtype=torch.float32)
    cases = {
        "quantize_4bit nf4 bs64 bf16": lambda: cpu.quantize_4bit_impl(w_bf16, 64, "nf4", torch.uint8, simd=simd),
        "dequantize_4bit nf4 bs64 -> bf16": lambda: cpu.dequantize_4bit_impl(
            packed, absmax4, 64, "nf4", [4096, 4096], torch.bfloat16, simd=simd
        ),
        "dequantize_4bit.out nf4 bs64 -> bf16": lambda: cpu.dequantize_4bit_out_impl(
            packed, absmax4, 64, "nf4", [4096, 4096], torch.bfloat16, out_bf16, simd=simd
        ),
        "quantize_blockwise fp32 bs256": lambda: cpu.quantize_blockwise_impl(w_f32, code, 256, simd=simd),
        "dequantize_blockwise fp32 bs256": lambda: cpu.dequantize_blockwise_impl(
            codes, absmax8, code, 256, torch.float32, simd=simd
        ),
        "dequantize_blockwise.out fp32 bs256": lambda: cpu.dequantize_blockwise_out_impl(
            codes, absmax8, code, 256, torch.float32, out_f32, simd=simd
        ),
    }
    threads = torch.get_num_threads()
    print(f"simd={cpu.simd_level(simd)}  4096x4096  (ms)")
    print(f"{'case':40s} {'median':>8s} {'best':>8s}  (wall, {threads} threads)  {'cpu, 1 thread':>14s}")
    for name, fn in cases.items():
        median, best = wall_ms(fn, args.reps)
        print(f"{name:40s} {median:8.2f} {best:8.2f}  {'':22s} {cpu_ms_one_thread(fn, max(3, args.reps // 3)):8.2f}")


if __name__ == "__main__":
    main()
