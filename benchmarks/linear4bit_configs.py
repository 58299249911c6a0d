"""Every 4-bit matmul path and tile config, timed one by one on a GPU (kernel choice data).

    python -m benchmarks.linear4bit_configs [--out DIR] [--shapes 0,1,2] [--tokens 16,128]

Per (shape, tokens): each candidate path of ``fourbit_matmul`` (plus extra configs) is
checked against dequantize + matmul and timed with ``triton.testing.do_bench`` (L2 flushed
between calls), beside ``torch.nn.functional.linear`` on the bf16 weight. At 2048 tokens it
also splits the dequantize + cuBLAS time into its parts and tries several chunk sizes of the
chunked path. Weights are NF4, block size 64, nested absmax (the anchor's layers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import torch

SHAPES = [(4096, 4096), (4096, 14336), (8192, 28672), (14336, 4096), (28672, 8192)]  # (K, N)

EXTRA = {
    16: [
        ("dot", 16, 64, 128, 4, 4, 1, 1),
        ("dot", 16, 64, 128, 4, 4, 4, 1),
        ("dot", 16, 64, 128, 4, 4, 1, 3, 1),
        ("dot", 16, 64, 128, 4, 4, 4, 3, 1),
        ("dot", 16, 64, 128, 4, 4, 2, 4, 1),
        ("dot", 16, 64, 128, 4, 3, 1, 1, 1),
        ("dot", 16, 128, 128, 8, 4, 2, 1, 1),
    ],
    128: [
        ("dot", 128, 128, 128, 8, 3, 2, 1, 1),
        ("dot", 128, 128, 128, 8, 4, 1, 3, 1),
        ("dot", 128, 128, 128, 8, 2, 1, 3, 1),
        ("dot", 64, 128, 128, 8, 3, 1, 3, 1),
    ],
}


def _decode5(cfg: tuple) -> bool:
    return cfg[0] == "dot" and len(cfg) > 7 and cfg[7] == 5


def build(K: int, N: int, device: str = "cuda"):
    """A random [N, K] weight and its NF4 quantization with nested absmax, as ``Linear4bit``
    (bnb-quant's ``quantize_4bit``) makes it: (W, packed, (absmax2, absmax codes, code2, offset))."""
    from bnb_quant import quantize_4bit

    g = torch.Generator(device="cpu").manual_seed(K + N)
    dt = torch.bfloat16 if device == "cuda" else torch.float16  # the interpreter's bf16 dot is off
    W = (torch.randn(N, K, generator=g) * 0.02).to(dt).to(device)
    q, state = quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=True)
    return W, q, (state.state2.absmax, state.absmax, state.state2.code, state.offset)


def _warm(job: tuple[int, list[tuple]]) -> int:
    """Compile configs on a small problem with the same specialization (every size a multiple
    of 16), so the timing pass finds them in Triton's disk cache."""
    M, cfgs = job
    import bnb_kernels  # noqa: F401
    from bnb_kernels.backends.triton import fourbit_matmul as T

    K, N = 8192, 256  # every size a multiple of 16, K long enough for every split-K
    W, q, (absmax2, a8, code8, offset) = build(K, N)
    meta = T._make_meta(absmax2, 64, T._lut("nf4", W.device), a8, code8, offset)
    x = torch.randn(M, K, dtype=W.dtype, device=W.device)
    done = 0
    for cfg in cfgs:
        try:
            out = torch.empty(M, N, dtype=W.dtype, device=W.device)
            T._Plan(cfg, M, N, K, meta, False)(x, q.reshape(-1), meta, None, out, M, N, K)
            done += 1
        except Exception:
            pass
    torch.cuda.synchronize()
    return done


def prewarm(tokens: list[int], procs: int, extra: bool = True) -> None:
    """Compile, in ``procs`` processes, every candidate the autotuner tries for these token
    counts on the anchor shapes (and the EXTRA configs), into Triton's disk cache."""
    import multiprocessing as mp

    from bnb_kernels.backends.triton import fourbit_matmul as T

    jobs = []
    for M in tokens:
        cfgs = []
        for K, N in SHAPES:
            cfgs += T.candidates(M, torch.bfloat16, N, K, 64)
        if extra:
            cfgs += EXTRA.get(M, [])
        cfgs = [c for c in dict.fromkeys(cfgs) if c[0] != "dequant_chunked"]
        for i in range(0, len(cfgs), 2):
            jobs.append((M, cfgs[i : i + 2]))
    t0 = time.time()
    with mp.get_context("spawn").Pool(procs) as pool:
        n = sum(pool.map(_warm, jobs))
    print(f"prewarm: {n} kernels compiled in {time.time() - t0:.0f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--shapes", default="0,1,2")
    ap.add_argument("--tokens", default="16,128,2048")
    ap.add_argument("--prewarm", type=int, default=0, help="compile first in this many processes")
    ap.add_argument("--prewarm-only", action="store_true", help="compile the candidates, time nothing")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting new cases after this")
    ap.add_argument("--no-extra", action="store_true", help="time only the autotuner's candidates")
    ap.add_argument("--no-host-probe", action="store_true", help="skip the module host-time probe")
    args = ap.parse_args()
    import triton
    import triton.testing

    import bnb_kernels  # noqa: F401  (registers the ops)
    from bnb_kernels.backends.triton import fourbit_matmul as T

    dev = "cuda"
    if not torch.cuda.is_available():  # smoke test of this script under TRITON_INTERPRET=1
        dev = "cpu"
        SHAPES[:] = [(128, 64), (256, 96), (128, 40)]
        triton.testing.do_bench = lambda fn, **kw: (fn(), 0.001)[1]
        for k in EXTRA:
            EXTRA[k] = [c for c in EXTRA[k] if c[7] != 3]
    t_start = time.time()
    if args.prewarm and dev == "cuda":
        try:
            prewarm(
                [int(t) for t in args.tokens.split(",")], args.prewarm, extra=not (args.prewarm_only or args.no_extra)
            )
        except Exception as exc:
            print(f"prewarm failed: {exc!r}", flush=True)
    if args.prewarm_only:
        return 0
    lines: list[str] = []
    summary: list[tuple] = []

    def say(s: str) -> None:
        lines.append(s)
        print(s, flush=True)

    def bench(fn) -> float:
        return triton.testing.do_bench(fn, warmup=5, rep=25, return_mode="median") * 1e3  # us

    say(
        f"device {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'} torch {torch.__version__} triton {triton.__version__}"
    )
    for si in [int(s) for s in args.shapes.split(",")]:
        K, N = SHAPES[si]
        W, q, (absmax2, a8, code8, offset) = build(K, N, dev)
        meta = T._make_meta(absmax2, 64, T._lut("nf4", W.device), a8, code8, offset)
        w = q.reshape(-1)
        dt = W.dtype
        Wd = T.dequantize(w, meta, N, K, dt)
        for M in [int(t) for t in args.tokens.split(",")]:
            if time.time() - t_start > args.budget_s:
                say("budget spent: stopping")
                break
            x = torch.randn(M, K, dtype=dt, device=dev)
            ref = (x.float() @ Wd.float().t()).to(dt)
            dense_us = bench(partial(torch.nn.functional.linear, x, W))
            say(f"== K{K} N{N} M{M}: dense {dense_us:7.1f} us")
            cfgs = []
            for c in T.candidates(M, dt, N, K, 64) + ([] if args.no_extra else EXTRA.get(M, [])):
                if c not in cfgs:
                    cfgs.append(c)
            res = []
            for cfg in cfgs:
                out = torch.empty(M, N, dtype=dt, device=dev)
                try:
                    plan = T._Plan(cfg, M, N, K, meta, False)
                    t0 = time.time()
                    plan(x, w, meta, None, out, M, N, K)
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    first = time.time() - t0
                    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                    us = bench(partial(plan, x, w, meta, None, out, M, N, K))
                except Exception as exc:  # a config that does not compile or fit
                    say(f"   {cfg!s:40s} FAILED {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                flag = "" if err < 1e-2 else "  WRONG"
                res.append((us, cfg))
                say(
                    f"   {cfg!s:40s} {us:8.1f} us  {dense_us / us:5.2f}x dense  err {err:.1e}  first {first:4.1f}s{flag}"
                )
            if res:
                us, cfg = min(res)
                say(f"   best {cfg} {us:.1f} us = {dense_us / us:.2f}x dense")
                d5 = [r for r in res if _decode5(r[1])]
                other = [r for r in res if not _decode5(r[1])]
                summary.append((K, N, M, dense_us, min(res), min(d5) if d5 else None, min(other) if other else None))
            if M >= 1024:
                # where the dequantize + cuBLAS time goes
                plan = T._Plan(("dequant",), M, N, K, meta, False)
                Wb = torch.empty(N, K, dtype=dt, device=dev)
                args_dq = (w, meta.absmax, meta.a8, meta.code2, meta.offset, meta.lut, Wb, N * K // 2)
                dq = bench(partial(plan.launch, args_dq, Wb, True))
                mm = bench(partial(torch.mm, x, Wb.t()))
                say(f"   parts: dequantize {dq:.1f} us ({(N * K * 2.5) / dq / 1e6:.2f} TB/s), mm {mm:.1f} us")
                old = T.CHUNK_BYTES
                for mb in (4, 8, 16, 32, 48):
                    T.CHUNK_BYTES = mb << 20
                    out = torch.empty(M, N, dtype=dt, device=dev)
                    plan = T._Plan(("dequant_chunked",), M, N, K, meta, False)
                    us = bench(partial(plan, x, w, meta, None, out, M, N, K))
                    say(f"   chunked {mb:3d} MB ({plan.split} rows): {us:8.1f} us {dense_us / us:5.2f}x")
                T.CHUNK_BYTES = old
        if dev == "cuda":
            torch.cuda.empty_cache()
    # host time per call of the module path at 16 tokens (the anchor's layer)
    try:
        if dev != "cuda" or args.no_host_probe:
            raise RuntimeError("no GPU" if dev != "cuda" else "skipped")
        import bitsandbytes as bnb

        K, N = 4096, 4096
        m = bnb.nn.Linear4bit(K, N, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
        m.weight = bnb.nn.Params4bit(
            torch.randn(N, K, dtype=torch.bfloat16) * 0.02, requires_grad=False, quant_type="nf4"
        )
        m = m.cuda()
        dense = torch.nn.Linear(K, N, bias=False, dtype=torch.bfloat16, device=dev)
        for M in (1, 16, 128):
            x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
            with torch.inference_mode():
                for fn, name in ((m, "Linear4bit"), (dense, "nn.Linear")):
                    fn(x)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(200):
                        fn(x)
                    per_call = (time.perf_counter() - t0) / 200 * 1e6
                    torch.cuda.synchronize()
                    say(f"host M{M} {name}: {per_call:.1f} us/call")
        say(f"tuned: { {str(k[:3]): v for k, v in T.tuned_configs().items()} }")
    except Exception as exc:
        say(f"host probe failed: {exc!r}")
    # compact table: the best decode-5 config against the best of the others
    say("K->N, tokens | dense us | best | decode 5 us (x dense) | others us (x dense) | d5 / others")
    for K, N, M, dense_us, best, d5, other in summary:
        cells = [f"{r[0]:7.1f} ({dense_us / r[0]:4.2f}x) {r[1]!s}" if r else "-" for r in (d5, other)]
        ratio = f"{other[0] / d5[0]:5.2f}" if d5 and other else "-"
        say(f"{K}->{N}, {M} | {dense_us:6.1f} | {best[1]!s} | {cells[0]} | {cells[1]} | {ratio}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "linear4bit-configs.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
