"""Two GPU measurements in one run (lent H100), for the open speed targets:

1. Linear4bit at 2048 tokens: dense, today's dequantize + cuBLAS, each part alone, and the
   weight dequantized in row chunks on a side stream while cuBLAS multiplies the chunks
   already done (does overlap hide the dequantize?).
2. Linear8bitLt 4096x4096 at 512 tokens, threshold 0 and 6: the path race's timings and
   each kernel's device time (torch profiler).
3. With ``--int8-switch NAME=v1,v2,...``: Linear8bitLt cases timed with a module attribute of
   the int8 Triton backend set to each value in turn (how its variants were compared).

    python3 scripts/gpu-exp-overlap.py [--shapes 0,1,2,3,4] [--skip-int8] [--skip-4bit]
"""

import argparse
import math
import sys
from pathlib import Path

import torch
import triton.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.linear4bit_configs import SHAPES, build


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median") * 1e3


def bounds_for(N: int, K: int, fractions: list[float]) -> list[tuple[int, int]]:
    step = 16384 // math.gcd(K, 16384)  # whole nested-absmax groups per chunk
    out, n0, acc = [], 0, 0.0
    for i, f in enumerate(fractions):
        acc += f
        n1 = N if i == len(fractions) - 1 else min(N, max(n0 + step, round(N * acc / step) * step))
        out.append((n0, n1))
        n0 = n1
    return [b for b in out if b[1] > b[0]]


def fourbit_2048(shapes: list[int], M: int) -> None:
    from bnb_kernels.backends.triton import fourbit_matmul as T

    side = torch.cuda.Stream()
    for si in shapes:
        fourbit_shape(T, side, *SHAPES[si], M)
        torch.cuda.empty_cache()


def fourbit_shape(T, side, K: int, N: int, M: int) -> None:
    W, q, (absmax2, a8, code8, offset) = build(K, N)
    meta = T._make_meta(absmax2, 64, T._lut("nf4", W.device), a8, code8, offset)
    w = q.reshape(-1)
    dt = W.dtype
    x = torch.randn(M, K, dtype=dt, device="cuda")
    out = torch.empty(M, N, dtype=dt, device="cuda")
    Wd = T.dequantize(w, meta, N, K, dt)
    ref = x @ Wd.t()
    plan = T._Plan(("dequant",), M, N, K, meta, False)
    plan(x, w, meta, None, out, M, N, K)
    dense = bench(lambda: torch.nn.functional.linear(x, W))
    cur = bench(lambda: plan(x, w, meta, None, out, M, N, K))
    dq = bench(lambda: T.dequantize(w, meta, N, K, dt))
    mm = bench(lambda: torch.mm(x, Wd.t(), out=out))
    print(
        f"== K{K} N{N} M{M}: dense {dense:7.1f} | dequant+mm {cur:7.1f} ({dense / cur:4.2f}x) | "
        f"dequant {dq:6.1f} | mm {mm:7.1f}",
        flush=True,
    )
    buf = torch.empty(N, K, dtype=dt, device="cuda")
    variants = {
        "2 equal": [1 / 2] * 2,
        "3 equal": [1 / 3] * 3,
        "4 equal": [1 / 4] * 4,
        "6 equal": [1 / 6] * 6,
        "1/8 then 3": [1 / 8] + [7 / 24] * 3,
        "1/16 then 2": [1 / 16] + [15 / 32] * 2,
    }
    for name, fr in variants.items():
        bnds = bounds_for(N, K, fr)
        events = [torch.cuda.Event() for _ in bnds]

        def chunked(overlap: bool, bnds=bnds, events=events):
            main = torch.cuda.current_stream()
            if overlap:
                side.wait_stream(main)
                with torch.cuda.stream(side):
                    for i, (n0, n1) in enumerate(bnds):
                        T.dequantize_rows(w, meta, n0, n1, K, buf[n0:n1])
                        events[i].record(side)
            for i, (n0, n1) in enumerate(bnds):
                if overlap:
                    main.wait_event(events[i])
                else:
                    T.dequantize_rows(w, meta, n0, n1, K, buf[n0:n1])
                torch.mm(x, buf[n0:n1].t(), out=out[:, n0:n1])
            return out

        res = []
        for ov in (False, True):
            out.zero_()
            chunked(ov)
            torch.cuda.synchronize()
            err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
            us = bench(lambda ov=ov: chunked(ov))
            res.append(f"{'overlap' if ov else 'serial '} {us:7.1f} ({dense / us:4.2f}x, err {err:.0e})")
        print(f"   {name:12s} {len(bnds)} chunks: " + " | ".join(res), flush=True)


def int8_case(m, dense, M: int, thr: float) -> None:
    from torch.profiler import ProfilerActivity, profile

    K, N = dense.in_features, dense.out_features
    x = torch.randn(M, K, dtype=torch.float16, device="cuda")
    if thr > 0:
        x[:, :: K // 8] *= 20.0
    with torch.inference_mode():
        m(x)
        t8 = bench(lambda: m(x))
        td = bench(lambda: dense(x))
        for _ in range(3):
            m(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                m(x)
            torch.cuda.synchronize()
    print(f"== int8 K{K} N{N} M{M} t{thr:g}: {t8:6.1f} us vs dense {td:6.1f} = {td / t8:4.2f}x", flush=True)
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", 0) or 0
        if t > 0:
            print(f"   {t / 20:7.2f} us x{e.count / 20:g} {e.key[:90]}", flush=True)


def _ms(t) -> float:
    return t[0] if isinstance(t, (list, tuple)) else t


def int8_512() -> None:
    import bitsandbytes as bnb
    from bnb_kernels.backends.triton import int8 as T8

    K = N = 4096
    dense = torch.nn.Linear(K, N, bias=False, dtype=torch.float16, device="cuda")
    tiny = torch.zeros(16, device="cuda")
    print(f"do_bench floor (one tiny kernel): {bench(lambda: tiny.add_(1.0)):.1f} us", flush=True)
    for thr in (0.0, 6.0):
        m = bnb.nn.Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=thr)
        m.weight = bnb.nn.Int8Params(dense.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
        int8_case(m.cuda(), dense, 512, thr)
    for k, v in T8.tuning_timings().items():
        print(f"   race {k}: " + ", ".join(f"{a} {_ms(b) * 1e3:.1f} us" for a, b in v.items()), flush=True)
    for k, v in T8.best_configs().items():
        print(f"   config {k}: {v}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="0,1,2,3,4")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--skip-int8", action="store_true")
    ap.add_argument("--skip-4bit", action="store_true")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    if not args.skip_int8:
        int8_512()
    if not args.skip_4bit:
        fourbit_2048([int(s) for s in args.shapes.split(",")], args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
