"""Where the time goes on a GPU: per case, the kernels launched (torch profiler), their device
time per call, the host time per call, and the wall time per call as anchor_gpu.py takes it.

    python scripts/gpu-profile.py [--only linear4bit,optim,linear8bit] [--shapes 0,3] [--out FILE]

Run on the device after ``source scripts/gpu-env.sh``. The kernel table answers "is it the
kernel or the host", which a wall-clock ratio alone cannot.
"""

import argparse
import math
import sys
import time

import torch
import triton.testing
from torch.profiler import ProfilerActivity, profile

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672), (28672, 8192)]
LINES: list[str] = []


def say(line: str) -> None:
    LINES.append(line)
    print(line, flush=True)


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def host_us(fn, n: int = 100) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6


def kernels(fn, iters: int = 10) -> list[tuple[str, float, float]]:
    """(kernel name, launches per call, device µs per call), slowest first."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
        if t > 0:
            rows.append((e.key[:70], e.count / iters, t / iters))
    rows.sort(key=lambda r: -r[2])
    return rows


def show_kernels(rows, top: int = 4) -> None:
    total = sum(r[2] for r in rows)
    say(f"    kernels {total:8.1f} us/call")
    for name, cnt, us in rows[:top]:
        say(f"      {us:8.1f} us  x{cnt:<4g} {name}")


def rotating(mods, x):
    state = {"i": 0}

    def run():
        m = mods[state["i"] % len(mods)]
        state["i"] += 1
        return m(x)

    return run


def linear4bit(bnb, shapes, batches) -> None:
    from bnb_kernels.backends.triton import fourbit_matmul as fm

    dtype = torch.bfloat16
    for K, N in shapes:
        copies = max(2, math.ceil(256e6 / (N * K / 2)))
        dense = [
            torch.nn.Linear(K, N, bias=False, dtype=dtype, device="cuda")
            for _ in range(max(2, math.ceil(256e6 / (N * K * 2))))
        ]
        mods = []
        for _ in range(copies):
            m = bnb.nn.Linear4bit(K, N, bias=False, compute_dtype=dtype, quant_type="nf4", compress_statistics=True)
            m.weight = bnb.nn.Params4bit(
                dense[0].weight.data.cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True
            )
            mods.append(m.cuda())
        for M in batches:
            x = torch.randn(M, K, dtype=dtype, device="cuda")
            with torch.inference_mode():
                mods[0](x)
                t4 = bench(rotating(mods, x))
                td = bench(rotating(dense, x))
                h4 = host_us(rotating(mods, x))
                hd = host_us(rotating(dense, x))
                rows = kernels(rotating(mods, x))
            cfg = [v for k, v in fm.tuned_configs().items() if k[1] == N and k[2] == K and k[0] == fm._bucket(M)]
            floor_us = (N * K / 2 + N * K / 64) / 3.0e6
            say(
                f"linear4bit K{K} N{N} M{M}: {t4 * 1e3:7.1f} us vs dense {td * 1e3:7.1f} us = {td / t4:5.2f}x | "
                f"host {h4:5.1f} us (dense {hd:5.1f}) | floor {floor_us:5.1f} us | path {cfg}"
            )
            show_kernels(rows)
        del mods, dense
        torch.cuda.empty_cache()


def optim(bnb) -> None:
    shapes = [(4096, 14336)] * 8 + [(4096,)] * 8
    for pdtype in (torch.float32, torch.bfloat16):
        params = [torch.nn.Parameter(torch.randn(*s, dtype=pdtype, device="cuda") * 0.02) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        nparam = sum(p.numel() for p in params)
        cases = [
            ("torch_AdamW_fused", lambda ps: torch.optim.AdamW(ps, lr=1e-4, fused=True), 16),
            ("AdamW8bit", lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-4), 16),
            ("Lion8bit", lambda ps: bnb.optim.Lion8bit(ps, lr=1e-4), 14),
            ("AdEMAMix8bit", lambda ps: bnb.optim.AdEMAMix8bit(ps, lr=1e-4), 18),
            ("AdamW32", lambda ps: bnb.optim.AdamW(ps, lr=1e-4), 28),
        ]
        for name, mk, bpp in cases:
            opt = mk(params)
            for _ in range(3):
                opt.step()
            torch.cuda.synchronize()
            ev = []
            for _ in range(5):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                opt.step()
                e.record()
                torch.cuda.synchronize()
                ev.append(s.elapsed_time(e))
            ms = sorted(ev)[2]
            h = host_us(opt.step, n=5)
            rows = kernels(opt.step, iters=3)
            if pdtype == torch.bfloat16:
                bpp = bpp - 6  # params and grads in 2 bytes instead of 4
            limit = nparam * bpp / 3.0e9
            say(
                f"optim {name} {str(pdtype)[6:]}: step {ms:6.3f} ms | host {h / 1e3:6.3f} ms | "
                f"limit {limit:5.2f} ms ({bpp} B/param) = {ms / limit:4.2f}x"
            )
            show_kernels(rows, top=3)
            del opt
            torch.cuda.empty_cache()
        del params
        torch.cuda.empty_cache()


def linear8bit(bnb, shapes, batches) -> None:
    dtype = torch.float16
    for K, N in shapes:
        dense = torch.nn.Linear(K, N, bias=False, dtype=dtype, device="cuda")
        for thr in (0.0, 6.0):
            m = bnb.nn.Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=thr)
            m.weight = bnb.nn.Int8Params(dense.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
            m = m.cuda()
            for M in batches:
                x = torch.randn(M, K, dtype=dtype, device="cuda")
                if thr > 0:
                    x[:, :: max(1, K // 8)] *= 20.0
                with torch.inference_mode():
                    m(x)
                    t8 = bench(lambda m=m, x=x: m(x))
                    td = bench(lambda d=dense, x=x: d(x))
                    h8 = host_us(lambda m=m, x=x: m(x))
                    hd = host_us(lambda d=dense, x=x: d(x))
                    rows = kernels(lambda m=m, x=x: m(x))
                say(
                    f"linear8bit K{K} N{N} M{M} t{thr:g}: {t8 * 1e3:7.1f} us vs dense {td * 1e3:7.1f} us = "
                    f"{td / t8:5.2f}x | host {h8:5.1f} us (dense {hd:5.1f})"
                )
                show_kernels(rows)
            del m
        del dense
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="linear4bit,optim,linear8bit")
    ap.add_argument("--shapes", default="0,1,2,3,4", help="indices into the five Llama shapes")
    ap.add_argument("--batches4", default="1,16,128,2048")
    ap.add_argument("--batches8", default="1,16,512,4096")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu-profile: needs a CUDA GPU", file=sys.stderr)
        return 2
    import bitsandbytes as bnb

    torch.manual_seed(0)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    say(f"device {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    for section in args.only.split(","):
        t0 = time.time()
        if section == "linear4bit":
            linear4bit(bnb, shapes, [int(b) for b in args.batches4.split(",")])
        elif section == "optim":
            optim(bnb)
        elif section == "linear8bit":
            linear8bit(bnb, [s for s in shapes if s in SHAPES[:3]], [int(b) for b in args.batches8.split(",")])
        else:
            print(f"gpu-profile: unknown section {section!r}", file=sys.stderr)
            return 64
        say(f"== {section} {time.time() - t0:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
