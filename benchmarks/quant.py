"""Blockwise 8-bit and 4-bit (NF4/FP4) quantization through ``bnb_quant``.

    python -m benchmarks.quant --device cpu|cuda [--json out.json]

Shapes and targets are those of ``ANCHORS.md``: on CUDA 64 M fp32 elements (blockwise,
block size 256) and 8192x8192 bf16 (4-bit, block size 64), targets in GB/s for an H100;
on the CPU 4096x4096 for both, targets in ms for 2 cores. Each row also reports the
round-trip relative error, so a fast but wrong kernel shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import bnb_kernels
import bnb_quant

from .harness import Bench, Target, copies_for, parse_args

GPU_SRC = "ANCHORS.md, H100"
CPU_SRC = "ANCHORS.md, 2-core CPU"

# (op, device) -> target, from ANCHORS.md / issue 2
TARGETS = {
    ("quantize_blockwise", "cuda"): Target("GBps", ">=", 2400, GPU_SRC),
    ("dequantize_blockwise", "cuda"): Target("GBps", ">=", 2600, GPU_SRC),
    ("quantize_4bit", "cuda"): Target("GBps", ">=", 2000, GPU_SRC),
    ("dequantize_4bit", "cuda"): Target("GBps", ">=", 2600, GPU_SRC),
    ("quantize_blockwise", "cpu"): Target("ms", "<=", 10, CPU_SRC),
    ("dequantize_blockwise", "cpu"): Target("ms", "<=", 6, CPU_SRC),
    ("quantize_4bit", "cpu"): Target("ms", "<=", 15, CPU_SRC),
    ("dequantize_4bit", "cpu"): Target("ms", "<=", 3, CPU_SRC),
}


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.float()
    return float((got.float() - ref).norm() / ref.norm())


def bench_blockwise(bench: Bench, n: int, blocksize: int) -> None:
    dev = bench.device
    copies = copies_for(4 * n, dev)
    xs = [torch.randn(n, dtype=torch.float32, device=dev) for _ in range(copies)]
    qs = [bnb_quant.quantize_blockwise(x, blocksize=blocksize) for x in xs]
    err = _rel_err(bnb_quant.dequantize_blockwise(*qs[0]), xs[0])
    backend = {op: bnb_kernels.selected_backend(op, dev) for op in ("quantize_blockwise", "dequantize_blockwise")}
    absmax_bytes = 4 * n / blocksize
    tag = f"bs{blocksize}_fp32_{n // (1 << 20)}M"
    bench.case(
        f"quantize_blockwise_{tag}",
        lambda x: bnb_quant.quantize_blockwise(x, blocksize=blocksize),
        [(x,) for x in xs],
        bytes_moved=4 * n + n + absmax_bytes,
        target=TARGETS[("quantize_blockwise", dev)],
        backend=backend["quantize_blockwise"],
        rel_err=err,
    )
    bench.case(
        f"dequantize_blockwise_{tag}",
        lambda q, st: bnb_quant.dequantize_blockwise(q, st),
        qs,
        bytes_moved=n + absmax_bytes + 4 * n,
        target=TARGETS[("dequantize_blockwise", dev)],
        backend=backend["dequantize_blockwise"],
        rel_err=err,
    )


def bench_4bit(bench: Bench, rows: int, cols: int, blocksize: int, quant_type: str) -> None:
    dev = bench.device
    n = rows * cols
    copies = copies_for(2 * n, dev)
    ws = [torch.randn(rows, cols, dtype=torch.bfloat16, device=dev) for _ in range(copies)]
    qs = [bnb_quant.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type) for w in ws]
    err = _rel_err(bnb_quant.dequantize_4bit(*qs[0]), ws[0])
    backend = {op: bnb_kernels.selected_backend(op, dev) for op in ("quantize_4bit", "dequantize_4bit")}
    absmax_bytes = 4 * n / blocksize
    tag = f"{quant_type}_bs{blocksize}_bf16_{rows}x{cols}"
    bench.case(
        f"quantize_4bit_{tag}",
        lambda w: bnb_quant.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type),
        [(w,) for w in ws],
        bytes_moved=2 * n + n / 2 + absmax_bytes,
        target=TARGETS[("quantize_4bit", dev)],
        backend=backend["quantize_4bit"],
        rel_err=err,
    )
    bench.case(
        f"dequantize_4bit_{tag}",
        lambda q, st: bnb_quant.dequantize_4bit(q, st),
        qs,
        bytes_moved=n / 2 + absmax_bytes + 2 * n,
        target=TARGETS[("dequantize_4bit", dev)],
        backend=backend["dequantize_4bit"],
        rel_err=err,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("quant", argv, description=__doc__.split("\n\n")[0])
    bench = Bench(args)
    if bench.device == "cuda":
        bench_blockwise(bench, n=64 * (1 << 20), blocksize=256)
        for qt in ("nf4", "fp4"):
            bench_4bit(bench, 8192, 8192, blocksize=64, quant_type=qt)
    else:
        bench_blockwise(bench, n=4096 * 4096, blocksize=256)
        for qt in ("nf4", "fp4"):
            bench_4bit(bench, 4096, 4096, blocksize=64, quant_type=qt)
    bench.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
