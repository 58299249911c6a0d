"""GPU check and timing of the Triton 4-bit GEMV kernel (backends/triton/fourbit_gemv.py).

1. Correctness: the kernel against the reference ``gemm_4bit`` on random inputs: several
   shapes (ragged N, K not a multiple of the step or of the block size), block sizes 32-4096,
   nested and plain absmax, nf4 and fp4, bf16/fp16/fp32, 1-4 token rows, every layout.
2. Speed: every config on the five anchor shapes (bf16, nf4, block size 64, nested), with
   >= 256 MB of weight copies rotated so L2 never holds the weight, timed with
   ``triton.testing.do_bench`` (median; it also clears L2 before each call), next to the
   dense bf16 layer (--new-only: the permute-decode configs and the two best gather configs).

Run on the GPU machine from the repository root:
    PYTHONPATH=packages/bnb-kernels/src python3 scripts/gpu-bench-gemv.py [--quick] [--new-only] [--prewarm 14]
Writes a JSON copy of the timings to $OUT/gemv-bench.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "tests"))  # _fourbit_cases

import triton
import triton.testing

import bnb_kernels  # noqa: F401  (registers the ops)
from bnb_kernels.backends.reference import fourbit_matmul as ref
from bnb_kernels.backends.triton import fourbit_gemv as G
from bnb_kernels.codebooks import fourbit_table

# The H100 baseline of the brief: (K, N) -> (current gemv kernel us, dense bf16 us).
BASELINE = {
    (4096, 4096): (19.4, 23.4),
    (4096, 14336): (47.2, 54.5),
    (14336, 4096): (52.0, 56.4),
    (8192, 28672): (169.0, 175.0),
    (28672, 8192): (167.0, 177.0),
}
TOL = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 1.2e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def quantized(N, K, M, bs, dtype, nested, qt, seed):
    """The tests' ``quantized_case`` on the GPU, with the GEMV's launch arguments."""
    from _fourbit_cases import launch_args, quantized_case

    _, x, bias, q, extra = quantized_case(N, K, M, bs, dtype, nested, qt, "cuda", seed)
    return x, bias, q, extra, launch_args(extra, nested)


def check_decode() -> int:
    """The inline-PTX permute decode (fourbit_decode.decode_word) on random words against
    the table lookup, for nf4 and fp4."""
    import triton.language as tl

    from bnb_kernels.backends.triton import fourbit_decode as D

    @triton.jit
    def k(w_ptr, lut_ptr, out_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        w = tl.load(w_ptr + i, mask=i < n, other=0)
        l0, l1, l2, l3, h0, h1, h2, h3 = D.table_planes(lut_ptr)
        v0, v1, v2, v3, v4, v5, v6, v7 = D.decode_word(w, l0, l1, l2, l3, h0, h1, h2, h3, True)
        m = i < n
        tl.store(out_ptr + i * 8, v0, mask=m)
        tl.store(out_ptr + i * 8 + 1, v1, mask=m)
        tl.store(out_ptr + i * 8 + 2, v2, mask=m)
        tl.store(out_ptr + i * 8 + 3, v3, mask=m)
        tl.store(out_ptr + i * 8 + 4, v4, mask=m)
        tl.store(out_ptr + i * 8 + 5, v5, mask=m)
        tl.store(out_ptr + i * 8 + 6, v6, mask=m)
        tl.store(out_ptr + i * 8 + 7, v7, mask=m)

    fails = 0
    for qt in ("nf4", "fp4"):
        n = 1 << 16
        w = torch.randint(-(2**31), 2**31 - 1, (n,), dtype=torch.int64, device="cuda").to(torch.int32)
        lut = fourbit_table(qt, "cuda")
        out = torch.empty(n, 8, device="cuda")
        k[(triton.cdiv(n, 256),)](w, lut, out, n, BLOCK=256)
        want = D.lookup_reference(w.cpu(), lut.cpu())
        ok = torch.equal(out.cpu(), want)
        fails += not ok
        print(f"permute decode {qt}: {'matches' if ok else 'DIFFERS FROM'} the table lookup on {n} words")
    return fails


def check(part: tuple[int, int] = (0, 1)) -> int:
    cases = [
        # N, K, bs, nested, quant type
        (4096, 4096, 64, True, "nf4"),
        (1000, 2048, 128, False, "nf4"),
        (300, 770, 32, True, "fp4"),  # K % bs != 0: byte layout
        (513, 3072, 256, True, "nf4"),  # K % 4096 != 0: masked tail step
        (64, 1024, 4096, False, "nf4"),  # a block spans rows
        (2000, 14336, 64, True, "fp4"),
    ]
    split16, split32 = G.GEMV_CONFIGS["16bit"][-1], G.GEMV_CONFIGS["fp32"][-1]
    pipe16, pipe32 = G.GEMV_CONFIGS["16bit"][4], G.GEMV_CONFIGS["fp32"][2]
    prmt, prmt4 = (2, 2048, 2, 1, 0, 1), (4, 2048, 2, 1, 1, 1)  # permute decode (fourbit_decode)
    b16, f16, f32 = torch.bfloat16, torch.float16, torch.float32
    # (dtype, M, config or None for the default, words)
    runs0 = [(b16, m, None, True) for m in (1, 2, 3, 4)] + [(b16, 1, None, False), (b16, 4, None, False)]
    runs0 += [(f16, 1, None, True), (f16, 3, None, True), (f32, 1, None, True), (f32, 2, None, True)]
    runs0 += [(b16, 1, split16, True), (b16, 1, pipe16, True), (b16, 3, pipe16, True), (f32, 1, pipe32, True)]
    runs0 += [(b16, m, prmt, True) for m in (1, 2, 4)] + [(f16, m, prmt4, True) for m in (1, 3)]
    runs = [(b16, 1, None, True), (f16, 4, None, True), (f32, 1, split32, True), (b16, 2, pipe16, True)]
    runs += [(b16, 1, prmt, True), (f16, 2, prmt, True), (b16, 4, prmt4, True), (f32, 1, prmt, True)]
    fails = 0
    n = 0
    t0 = time.time()
    k = -1
    for ci, (N, K, bs, nested, qt) in enumerate(cases):
        for dt, M, cfg, words in runs0 if ci == 0 else runs:
            k += 1
            if k % part[1] != part[0]:
                continue
            cfg = cfg or G.gemv_config(M, N, K, dt)
            x, bias, q, extra, args = quantized(N, K, M, bs, dt, nested, qt, seed=ci * 10 + M)
            expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, bias, *extra[1:])
            lut = fourbit_table(qt, "cuda")
            out = torch.full((M, N), float("nan"), dtype=dt, device="cuda")
            G.gemv_launch(cfg, x, q.reshape(-1), *args, lut, bias, out, N, K, bs, nested, words=words)
            e = rel(out, expected)
            n += 1
            if not torch.isfinite(out).all() or e > TOL[dt]:
                fails += 1
                print(f"FAIL N={N} K={K} bs={bs} nested={nested} {qt} {dt} M={M} {cfg} words={words}: {e:.3g}")
    print(f"correctness: {n - fails}/{n} launches match the reference ({time.time() - t0:.0f} s)")
    return fails


NEW_ONLY = "--new-only" in sys.argv


def _timed_configs(M: int, dt: torch.dtype) -> list[tuple]:
    """Every candidate, or with --new-only the permute-decode ones next to the two best
    gather configs of the earlier H100 run."""
    cands = G.gemv_candidates(M, dt)
    if not NEW_ONLY:
        return cands
    return [c for c in cands if (c[:4] in ((2, 2048, 2, 1), (4, 2048, 2, 1)) and len(c) == 4) or (len(c) > 5 and c[5])]


def _timed(fn, copies: int, ws: list, a8s: list) -> float:
    """Median us of ``fn(w, a8)``, each call on the next weight copy (L2 never holds it)."""
    state = {"i": 0}

    def run():
        i = state["i"] = (state["i"] + 1) % copies
        fn(ws[i], a8s[i])

    return triton.testing.do_bench(run, warmup=10, rep=60, return_mode="median") * 1e3


def bench_shape(K: int, N: int, base_us: float, dense_us_brief: float, Ms: tuple, T) -> list[dict]:
    dt = torch.bfloat16
    bs = 64
    lut = fourbit_table("nf4", "cuda")
    code2 = torch.linspace(-1.0, 1.0, 256, device="cuda")
    offset = torch.tensor(0.02, device="cuda")
    nbytes = N * K // 2
    blocks = N * K // bs
    copies = max(2, math.ceil((256 << 20) / nbytes))
    ws = [torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device="cuda") for _ in range(copies)]
    a8s = [torch.randint(0, 256, (blocks,), dtype=torch.uint8, device="cuda") for _ in range(copies)]
    absmax2 = torch.rand(triton.cdiv(blocks, 256), device="cuda") * 0.01 + 0.001
    total_bytes = nbytes + blocks + absmax2.numel() * 4 + K * 2 + N * 2
    floor_us = total_bytes / 3.0e12 * 1e6
    Wd = torch.randn(N, K, device="cuda", dtype=dt)
    rows = []
    for M in Ms:
        x = torch.randn(M, K, device="cuda", dtype=dt)
        out = torch.empty(M, N, device="cuda", dtype=dt)
        dense_us = (
            triton.testing.do_bench(
                lambda x=x: torch.nn.functional.linear(x, Wd), warmup=10, rep=60, return_mode="median"
            )
            * 1e3
        )
        res = []
        for cfg in _timed_configs(M, dt):
            for words in (True, False) if cfg == G.GEMV_CONFIGS["16bit"][0] and not NEW_ONLY else (True,):

                def f_new(w, a8, cfg=cfg, words=words, x=x, out=out):
                    G.gemv_launch(cfg, x, w, absmax2, a8, code2, offset, lut, None, out, N, K, bs, True, words=words)

                try:
                    res.append((f"{cfg}{'' if words else ' bytes'}", _timed(f_new, copies, ws, a8s)))
                except Exception as e:
                    print(cfg, "failed:", type(e).__name__, str(e)[:300])
        best = min((us for name, us in res if not name.startswith("old")), default=float("nan"))
        print(
            f"\n## K={K} N={N} M={M}: dense bf16 {dense_us:.1f} us (brief {dense_us_brief}), floor {floor_us:.1f} us, "
            f"brief baseline gemv {base_us} us, target {dense_us / 2.5:.1f} us (2.5x dense)"
        )
        print("| config | us | GB/s | vs brief baseline | vs dense | best |")
        print("|---|---|---|---|---|---|")
        for name, us in res:
            gbs = total_bytes / us / 1e3
            mark = "<-" if us == best else ""
            print(f"| {name} | {us:.1f} | {gbs:.0f} | {base_us / us:.2f}x | {dense_us / us:.2f}x | {mark} |")
            rows.append(dict(K=K, N=N, M=M, config=name, us=us, gbps=gbs, dense_us=dense_us, floor_us=floor_us))
    return rows


def bench(quick: bool) -> list[dict]:
    try:
        from bnb_kernels.backends.triton import fourbit_matmul as T
    except Exception as e:  # another helper may be editing it
        print("fourbit_matmul unavailable:", e)
        T = None
    rows = []
    for (K, N), (base_us, dense_us) in BASELINE.items():
        rows += bench_shape(K, N, base_us, dense_us, (1,) if quick else (1, 4), T)
        torch.cuda.empty_cache()
    return rows


def warm_bench(part: tuple[int, int], quick: bool) -> None:
    """Compile the timed variants (same specializations as the anchor shapes) into Triton's
    disk cache: N and K divisible by 16, nested, block size 64, no bias."""
    N, K, bs = 256, 4096, 64
    x1 = torch.randn(4, K, device="cuda", dtype=torch.bfloat16)
    w = torch.randint(0, 256, (N * K // 2,), dtype=torch.uint8, device="cuda")
    a8 = torch.randint(0, 256, (N * K // bs,), dtype=torch.uint8, device="cuda")
    absmax2 = torch.rand(triton.cdiv(N * K // bs, 256), device="cuda")
    code2 = torch.linspace(-1.0, 1.0, 256, device="cuda")
    offset = torch.tensor(0.02, device="cuda")
    lut = fourbit_table("nf4", "cuda")
    k = -1
    for M in (1,) if quick else (1, 4):
        for cfg in _timed_configs(M, torch.bfloat16):
            for words in (True, False) if cfg == G.GEMV_CONFIGS["16bit"][0] and not NEW_ONLY else (True,):
                k += 1
                if k % part[1] == part[0]:
                    out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
                    G.gemv_launch(
                        cfg, x1[:M], w, absmax2, a8, code2, offset, lut, None, out, N, K, bs, True, words=words
                    )
    torch.cuda.synchronize()


def prewarm(procs: int, quick: bool) -> None:
    import subprocess

    t0 = time.time()
    ps = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", f"{i},{procs}"]
            + (["--quick"] if quick else [])
            + (["--new-only"] if NEW_ONLY else [])
        )
        for i in range(procs)
    ]
    codes = [p.wait() for p in ps]
    print(f"prewarm: {procs} processes compiled the variants in {time.time() - t0:.0f} s (exit codes {codes})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="M=1 timings only")
    ap.add_argument("--new-only", action="store_true", help="time the permute decode next to the best gathers")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--prewarm", type=int, default=0, help="compile in this many processes first")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        part = tuple(int(v) for v in a.worker.split(","))
        check(part)
        warm_bench(part, a.quick)
        return
    print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| triton", triton.__version__)
    if a.prewarm:
        prewarm(a.prewarm, a.quick)
    fails = 0 if a.no_check else check_decode() + check()
    rows = bench(a.quick)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gemv-bench.json"), "w") as f:
            json.dump(rows, f, indent=1)
    if fails:
        raise SystemExit(f"{fails} correctness failures")


if __name__ == "__main__":
    main()
