"""Linear4bit (NF4, nested absmax, bf16) against ``torch.nn.Linear`` in bf16, same run.

    python -m benchmarks.linear4bit --device cpu|cuda [--json out.json] [--only K4096_N4096]

CUDA: the five Llama shapes of ``ANCHORS.md`` at 1, 16, 128 and 2048 tokens, modules built
exactly as ``anchor_gpu.py`` builds them (``Linear4bit(K, N, bias=False,
compute_dtype=bf16, quant_type="nf4", compress_statistics=True)`` with a ``Params4bit`` of
the dense weight, ``.cuda()``, inference mode), rotating over enough copies that the
weights do not sit in L2. Targets are speedups over the dense layer.
CPU: 4096x4096 at 1 and 32 tokens against bf16 dense (targets: faster at 1 token, no
slower at 32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bnb_nn import Linear4bit, Params4bit

from .harness import Bench, Target, copies_for, parse_args

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672), (28672, 8192)]
GPU_TARGETS = {1: 2.5, 16: 2.0, 128: 1.0, 2048: 0.95}
CPU_TARGETS = {1: 1.0, 32: 1.0}


def _module(K: int, N: int, weight: torch.Tensor, device: str) -> Linear4bit:
    m = Linear4bit(K, N, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
    m.weight = Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    return m.to(device)


def run_shape(bench: Bench, K: int, N: int, batches: Sequence[int], targets: dict[int, float]) -> None:
    dev = bench.device
    dtype = torch.bfloat16
    names = [f"K{K}_N{N}_M{M}" for M in batches]
    if not any(bench.wanted(n) for n in names):
        return
    if dev == "cuda":
        n4 = max(2, math.ceil(256e6 / (N * K / 2)))
        nd = max(2, math.ceil(256e6 / (N * K * 2)))
    else:
        n4 = copies_for(N * K / 2, dev)
        nd = copies_for(N * K * 2, dev)
    dense = [torch.nn.Linear(K, N, bias=False, dtype=dtype, device=dev) for _ in range(nd)]
    w_cpu = dense[0].weight.data.cpu()
    mods = [_module(K, N, w_cpu, dev) for _ in range(n4)]
    for M, name in zip(batches, names):
        if not bench.wanted(name):
            continue
        x = torch.randn(M, K, dtype=dtype, device=dev)
        with torch.inference_mode():
            ref = dense[0](x)
            got = mods[0](x)  # first call: picks (and on a GPU, times) the kernel for this shape
            rel = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
            t4 = bench.time(lambda m, x: m(x), [(m, x) for m in mods])
            td = bench.time(lambda m, x: m(x), [(m, x) for m in dense])
        byts = N * K / 2 + N * K / 64 + 2 * M * (K + N)
        speedup = td / t4
        bench.record(
            name,
            t4,
            bytes_moved=byts,
            target=Target("speedup_vs_bf16", ">=", targets[M], "ANCHORS.md / issue 4"),
            dense_ms=td,
            speedup_vs_bf16=speedup,
            rel_err_vs_bf16=rel,
            path=_path(dev, M, N, K),
        )
    del mods, dense
    if dev == "cuda":
        torch.cuda.empty_cache()


def _path(dev: str, M: int, N: int, K: int) -> str:
    if dev != "cuda":
        return "native"
    from bnb_kernels.backends.triton import fourbit_matmul as T

    for key, cfg in T.tuned_configs().items():
        if key[0] == T._bucket(M) and key[1] == N and key[2] == K:
            return "/".join(str(c) for c in cfg)
    return "heuristic"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("linear4bit", argv, description=__doc__)
    torch.manual_seed(0)
    bench = Bench(args)
    if bench.device == "cuda":
        for K, N in SHAPES:
            run_shape(bench, K, N, (1, 16, 128, 2048), GPU_TARGETS)
    else:
        run_shape(bench, 4096, 4096, (1, 32), CPU_TARGETS)
    bench.finish()


if __name__ == "__main__":
    main()
