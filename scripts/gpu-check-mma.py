"""GPU check and timing of the tensor-core 4-bit GEMV (``fourbit_mma.mma_kernel``), whose
inline PTX (the ``mma.sync`` chain, the permute decode) the CPU tests only emulate.

1. correctness: every mma candidate of the autotuner against the reference ``gemm_4bit`` on
   two anchor shapes at 1, 4 and 16 tokens (bf16, nf4, block size 64, nested absmax), then
   fp16, fp4, plain absmax, block sizes 128-4096, bias, ragged N, 3 and 9 tokens, and a
   weight that is not 8-byte aligned (the plan falls back to another path);
2. timing (kernel, ``do_bench`` median, L2 flushed) on the five anchor shapes at 1, 4 and 16
   tokens: each mma candidate, the paths the autotuner had before it (GEMV / decode-5 dot)
   and dense bf16 ``F.linear``;
3. ``--only layer``: ``Linear4bit`` at 2-16 tokens with and without the tensor-core GEMV.

Exit status 1 on any mismatch (the caller then sets ``BNB_4BIT_MMA=0``). Run from the
repository root on the GPU machine:
    source scripts/gpu-env.sh && python3 scripts/gpu-check-mma.py [--only check,time] [--procs 12]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "tests"))  # _fourbit_cases

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672), (28672, 8192)]  # (K, N)
TOKENS = (1, 4, 16)
TOL = {torch.float16: 3e-3, torch.bfloat16: 1.2e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def quantized(N, K, blocksize=64, nested=True, quant_type="nf4", device="cuda", seed=0):
    """(W, packed weight, meta, extra) for a random [N, K] bf16 weight: the tests' inputs
    (``_fourbit_cases.quantized_case``) with the launch arguments decoded once."""
    from _fourbit_cases import quantized_case

    from bnb_kernels.backends.triton import fourbit_matmul as T

    W, _, _, q, extra = quantized_case(
        N, K, 1, blocksize, torch.bfloat16, nested, quant_type, device, seed=seed + N + K
    )
    meta = T._make_meta(extra[0], blocksize, T._lut(quant_type, W.device), *extra[1:])
    return W, q.reshape(-1), meta, extra


def mma_configs(M: int, N: int, K: int) -> list[tuple]:
    """Every mma candidate, also at 1 token (where the autotuner does not offer it)."""
    from bnb_kernels.backends.triton import fourbit_mma

    return [("mma", *c) for c in fourbit_mma.mma_candidates(M, N, K)]


def reference_configs(M: int, N: int) -> list[tuple]:
    """What the autotuner picked from before the mma kernel (benchmarks/linear4bit-notes.md)."""
    from bnb_kernels.backends.triton import fourbit_matmul as T

    gemv = [("gemv", 2, 2048, 2, 1, 0, 1), ("gemv", 4, 2048, 2, 1, 0, 1), ("gemv", 2, 2048, 2, 1, 1, 1)]
    if M == 1:
        return gemv
    dots = T._dot5_candidates(M, N)[:3]
    return gemv + dots if M <= 4 else dots


def jobs() -> list[tuple[int, tuple, bool]]:
    """(M, config, fp16) of every kernel this script launches, for the parallel compile."""

    out = []
    for M in TOKENS:
        for K, N in SHAPES:
            out += [(M, c, False) for c in mma_configs(M, N, K)]
            out += [(M, c, False) for c in reference_configs(M, N)]
    return list(dict.fromkeys(out))


def _warm(batch: list[tuple[int, tuple, bool]]) -> int:
    import bnb_kernels  # noqa: F401
    from bnb_kernels.backends.triton import fourbit_matmul as T

    K, N = 8192, 256  # every size a multiple of 16, as on the anchor shapes
    done = 0
    _, w, meta, _ = quantized(N, K)
    for M, cfg, fp16 in batch:
        dt = torch.float16 if fp16 else torch.bfloat16
        x = torch.randn(M, K, dtype=dt, device="cuda")
        out = torch.empty(M, N, dtype=dt, device="cuda")
        try:
            T._Plan(cfg, M, N, K, meta, False)(x, w, meta, None, out, M, N, K)
            done += 1
        except Exception as exc:
            print(f"compile {cfg} M={M}: {exc!r}"[:300], flush=True)
    torch.cuda.synchronize()
    return done


def prewarm(procs: int) -> None:
    js = jobs()
    batches = [js[i : i + 3] for i in range(0, len(js), 3)]
    t0 = time.time()
    with mp.get_context("spawn").Pool(procs) as pool:
        n = sum(pool.map(_warm, batches))
    print(f"prewarm: {n}/{len(js)} kernels compiled in {time.time() - t0:.0f} s", flush=True)


def check() -> int:
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_matmul as T

    fails = 0

    def one(label, N, K, M, dt=torch.bfloat16, bs=64, nested=True, qt="nf4", bias=False, configs=None, shift=0):
        nonlocal fails
        _, w, meta, extra = quantized(N, K, bs, nested, qt)
        x = torch.randn(M, K, device="cuda").to(dt)
        b = torch.randn(N, device="cuda").to(dt) if bias else None
        want = ref.gemm_4bit(x, w, [N, K], extra[0], bs, qt, b, *extra[1:])
        if shift:  # the same bytes at an address that is not 8-byte aligned
            buf = torch.empty(w.numel() + shift, dtype=torch.uint8, device="cuda")
            buf[shift:] = w
            w = buf[shift:]
        cfgs = configs or mma_configs(M, N, K)
        if not label.startswith("anchor"):
            cfgs = cfgs[:3]  # the layouts; the anchors run every split
        worst = 0.0
        for cfg in cfgs:
            out = torch.full((M, N), float("nan"), dtype=dt, device="cuda")
            T._Plan(cfg, M, N, K, meta, bias)(x, w, meta, b, out, M, N, K)
            out2 = torch.full((M, N), float("nan"), dtype=dt, device="cuda")
            T._Plan(cfg, M, N, K, meta, bias)(x, w, meta, b, out2, M, N, K)  # counters were reset
            err = rel(out, want) if torch.isfinite(out).all() and torch.isfinite(out2).all() else float("inf")
            err = max(err, rel(out2, want))
            worst = max(worst, err)
            if err > TOL[dt]:
                fails += 1
                print(f"  MISMATCH {label} {cfg}: rel err {err:.3g}", flush=True)
        print(f"{label}: {len(cfgs)} configs, worst rel err {worst:.3g}", flush=True)

    for K, N in ((4096, 4096), (14336, 4096)):
        for M in TOKENS:
            one(f"anchor K{K} N{N} M{M}", N, K, M)
    one("fp16 M3", 4096, 4096, 3, dt=torch.float16)
    one("fp16 M9 fp4 plain", 2048, 1024, 9, dt=torch.float16, nested=False, qt="fp4")
    one("bs128 bias M16", 1000, 2048, 16, bs=128, bias=True)
    one("bs4096 ragged N M5", 1001, 4096, 5, bs=4096)
    one("bs256 fp4 M2", 24, 512, 2, bs=256, qt="fp4")
    one("unaligned weight M1", 512, 1024, 1, configs=[("mma", 4, 1, 4, 128), ("mma", 4, 4, 2, 96, 1, 1)], shift=4)
    return fails


def _bench(fn) -> float:
    import triton

    return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median") * 1e3


def _time_shape(K: int, N: int) -> None:
    from bnb_kernels.backends.triton import fourbit_matmul as T

    W, w, meta, _ = quantized(N, K)
    for M in TOKENS:
        x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
        out = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
        dense = _bench(lambda x=x: torch.nn.functional.linear(x, W))
        res = {}
        mma = mma_configs(M, N, K)
        for cfg in mma + reference_configs(M, N):
            try:
                plan = T._Plan(cfg, M, N, K, meta, False)
                plan(x, w, meta, None, out, M, N, K)
                res[cfg] = _bench(lambda plan=plan, x=x, out=out, M=M: plan(x, w, meta, None, out, M, N, K))
            except Exception as exc:
                print(f"  {cfg}: {exc!r}"[:200])
        mm = {c: t for c, t in res.items() if c[0] == "mma"}
        old = {c: t for c, t in res.items() if c[0] != "mma"}
        bm = min(mm, key=mm.get)
        bo = min(old, key=old.get)
        print(
            f"{K}->{N} M{M} | {dense:.1f} us | {mm[bm]:.1f} us {bm} | {old[bo]:.1f} us {bo} | "
            f"{dense / mm[bm]:.2f}x (before {dense / old[bo]:.2f}x)",
            flush=True,
        )
        print("   mma: " + ", ".join(f"{c[1:]}={t:.1f}" for c, t in sorted(mm.items(), key=lambda kv: kv[1])))


def timing() -> None:
    print("\nK->N, tokens | dense bf16 | best mma (config) | best before (config) | mma / dense speedup")
    for K, N in SHAPES:
        _time_shape(K, N)
        torch.cuda.empty_cache()


def layer(tokens=(2, 4, 8, 16)) -> None:
    """``Linear4bit`` (built as anchor_gpu.py builds it) against bf16 dense, with the
    tensor-core GEMV among the autotuner's candidates and without it (``_MMA`` off)."""
    from bnb_kernels.backends.triton import fourbit_matmul as T
    from bnb_nn import Linear4bit, Params4bit

    print("\nLinear4bit layer (us): K->N tokens | dense | with mma (chosen) | without mma (chosen)")
    offered_before = T._MMA
    for K, N in SHAPES:
        dense = torch.nn.Linear(K, N, bias=False, dtype=torch.bfloat16, device="cuda")
        for M in tokens:
            x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
            row = []
            for offered in (True, False):
                T._MMA = offered
                T._TUNED.clear()
                m = Linear4bit(
                    K, N, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True
                )
                m.weight = Params4bit(
                    dense.weight.data.cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True
                )
                m = m.cuda()
                with torch.inference_mode():
                    m(x)
                    t = _bench(lambda m=m, x=x: m(x))
                chosen = [c for k, c in T.tuned_configs().items() if k[0] == T._bucket(M) and k[1] == N]
                row.append((t, chosen[0] if chosen else None))
            T._MMA = offered_before
            with torch.inference_mode():
                td = _bench(lambda x=x, dense=dense: dense(x))
            (a, ca), (b, cb) = row
            print(f"{K}->{N} M{M} | {td:.1f} | {a:.1f} {ca} = {td / a:.2f}x | {b:.1f} {cb} = {td / b:.2f}x", flush=True)
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="check,time", help="comma-separated: check, time, layer")
    ap.add_argument("--procs", type=int, default=12, help="processes for the parallel compile (0: none)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check-mma: no CUDA device", file=sys.stderr)
        return 2
    import bnb_kernels  # noqa: F401

    parts = set(args.only.split(","))
    if args.procs:
        prewarm(args.procs)
    fails = check() if "check" in parts else 0
    if "time" in parts:
        timing()
    if "layer" in parts:
        layer()
    print(f"\ngpu-check-mma: {'FAILED (' + str(fails) + ' mismatches)' if fails else 'all checks passed'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
