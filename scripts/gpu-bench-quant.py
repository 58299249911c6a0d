"""Time every Triton quantize variant at the anchor sizes (run by scripts/gpu-check-quant.sh).

    python scripts/gpu-bench-quant.py OUT_DIR            # time; writes bench.json, bench.txt
    python scripts/gpu-bench-quant.py OUT_DIR --prewarm 8  # compile every case, 8 processes

Bytes are counted as ../shared/bench/anchor_gpu.py counts them (input read + output written
+ absmax). Each row also says whether that case's output is the reference's, bit for bit, on
one input ("exact" / "MISMATCH"). The prewarm pass runs each case once on a small input with the same kernel
specialization (dtype, block size, alignment, sizes divisible by 16), in parallel processes,
so the timing pass loads every kernel from Triton's disk cache instead of compiling it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "packages", "bnb-kernels", "tests"))

# (op, label, block size, quant type, keyword arguments); "DEFAULT" runs the op's defaults.
Q4 = [
    ("tiles (old default)", 64, "nf4", {"variant": "tiles", "tile": 2048, "num_warps": 4, "lut": True, "addr32": True}),
    ("tiles tile4096 w8", 64, "nf4", {"variant": "tiles", "tile": 4096, "num_warps": 8}),
    ("rows w4 pt64", 64, "nf4", {"variant": "rows", "num_warps": 4, "per_thread": 64, "pair": False}),
    ("rows w8 pt64", 64, "nf4", {"variant": "rows", "num_warps": 8, "per_thread": 64, "pair": False}),
    ("rows w2 pt64", 64, "nf4", {"variant": "rows", "num_warps": 2, "per_thread": 64, "pair": False}),
    ("rows w4 pt32", 64, "nf4", {"variant": "rows", "num_warps": 4, "per_thread": 32, "pair": False}),
    ("rows w4 pair", 64, "nf4", {"variant": "rows", "num_warps": 4, "per_thread": 64, "pair": True}),
    ("rows w8 pair", 64, "nf4", {"variant": "rows", "num_warps": 8, "per_thread": 64, "pair": True}),
    ("DEFAULT", 128, "nf4", {}),
    ("DEFAULT", 64, "fp4", {}),
    ("DEFAULT", 64, "nf4", {}),
]
Q8 = [
    ("tree (old default)", 256, {"variant": "tree", "tile": 2048, "num_warps": 4, "sel_levels": 2, "addr32": True}),
    ("grid w4 pt64 pair stream", 256, {"variant": "grid", "num_warps": 4, "per_thread": 64, "pair": True, "stream": True}),
    ("grid w4 pt64 pair nostream", 256, {"variant": "grid", "num_warps": 4, "per_thread": 64, "pair": True, "stream": False}),
    ("grid w4 pt64 nopair stream", 256, {"variant": "grid", "num_warps": 4, "per_thread": 64, "pair": False, "stream": True}),
    ("grid w4 pt64 nopair nostream", 256, {"variant": "grid", "num_warps": 4, "per_thread": 64, "pair": False, "stream": False}),
    ("grid w8 pt64 pair stream", 256, {"variant": "grid", "num_warps": 8, "per_thread": 64, "pair": True, "stream": True}),
    ("grid w2 pt64 pair stream", 256, {"variant": "grid", "num_warps": 2, "per_thread": 64, "pair": True, "stream": True}),
    ("grid w4 pt32 pair stream", 256, {"variant": "grid", "num_warps": 4, "per_thread": 32, "pair": True, "stream": True}),
    ("DEFAULT", 4096, {}),
    ("DEFAULT", 256, {}),
]  # fmt: skip


def _cases(n4: int, m8: int, reps: int, check: bool = False):
    """(case, label, callables, bytes, check) for every timed case, on inputs of n4 bf16 /
    m8 fp32; ``check()`` says whether the case's output on the first input is the reference's
    (bit for bit), or is None without ``check``."""
    from test_quant_triton import _dynamic_code

    from bnb_kernels.backends.reference import quant as R
    from bnb_kernels.backends.triton import quant as T

    dev = os.environ.get("BNB_BENCH_DEVICE", "cuda")  # "cpu" only to check this script (interpreter)
    refs: dict = {}

    def checker(fn, key, make):
        """A check that fn()'s tensors equal make()'s (computed once per key)."""

        def ok() -> bool:
            if key not in refs:
                refs[key] = make()
            return all(torch.equal(x, y) for x, y in zip(fn(), refs[key]))

        return ok if check else None

    out = []
    W = [torch.randn(n4, dtype=torch.bfloat16, device=dev) for _ in range(reps)]
    for label, bs, qt, kw in Q4:
        fns = [lambda w=w, bs=bs, qt=qt, kw=kw: T.quantize_4bit(w, bs, qt, torch.uint8, **kw) for w in W]
        ref = lambda bs=bs, qt=qt: R.quantize_4bit(W[0], bs, qt, torch.uint8)  # noqa: E731
        nbytes = 2 * n4 + n4 / 2 + 4 * n4 / bs
        out.append((f"quantize_4bit_{qt}_bs{bs}_bf16", label, fns, nbytes, checker(fns[0], ("q4", bs, qt), ref)))
    Q = [T.quantize_4bit(w, 64, "nf4", torch.uint8) for w in W]
    fns = [lambda q=q: [T.dequantize_4bit(q[0], q[1], 64, "nf4", (n4,), torch.bfloat16)] for q in Q]
    ref = lambda: [R.dequantize_4bit(Q[0][0], Q[0][1], 64, "nf4", (n4,), torch.bfloat16)]  # noqa: E731
    nbytes = n4 / 2 + 4 * n4 / 64 + 2 * n4
    out.append(("dequantize_4bit_nf4_bs64_bf16", "DEFAULT", fns, nbytes, checker(fns[0], "dq4", ref)))
    Wf = [torch.randn(m8, device=dev) for _ in range(reps)]
    code = _dynamic_code().to(dev)
    for label, bs, kw in Q8:
        fns = [lambda w=w, bs=bs, kw=kw: T.quantize_blockwise(w, code, bs, **kw) for w in Wf]
        ref = lambda bs=bs: R.quantize_blockwise(Wf[0], code, bs)  # noqa: E731
        nbytes = 4 * m8 + m8 + 4 * m8 / bs
        out.append((f"quantize_blockwise_bs{bs}_fp32", label, fns, nbytes, checker(fns[0], ("q8", bs), ref)))
    Q8b = [T.quantize_blockwise(w, code, 256) for w in Wf]
    fns = [lambda q=q: [T.dequantize_blockwise(q[0], q[1], code, 256, torch.float32)] for q in Q8b]
    ref = lambda: [R.dequantize_blockwise(Q8b[0][0], Q8b[0][1], code, 256, torch.float32)]  # noqa: E731
    nbytes = m8 + 4 * m8 / 256 + 4 * m8
    out.append(("dequantize_blockwise_bs256_fp32", "DEFAULT", fns, nbytes, checker(fns[0], "dq8", ref)))
    return out


def _prewarm_worker(args: tuple[int, int]) -> str:
    i, k = args
    import bnb_kernels  # noqa: F401

    done = 0
    # Small inputs, sizes multiples of every tile (same specialization as the full-size run).
    for j, (_, _, fns, _, _) in enumerate(_cases(1 << 16, 1 << 16, 1)):
        if j % k == i:
            try:
                fns[0]()
                done += 1
            except Exception as e:  # the timing pass reports failures
                return f"worker {i}: {type(e).__name__}: {e}"
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return f"worker {i}: {done} cases compiled"


def prewarm(k: int) -> None:
    t0 = time.time()
    try:
        with mp.get_context("spawn").Pool(k) as pool:
            for line in pool.map(_prewarm_worker, [(i, k) for i in range(k)]):
                print(line, flush=True)
    except Exception as e:  # the timing pass compiles what is missing
        print(f"prewarm failed: {type(e).__name__}: {e}", flush=True)
    print(f"prewarm: {time.time() - t0:.1f} s", flush=True)


def main(out_dir: str) -> None:
    import triton
    from triton.testing import do_bench

    import bnb_kernels  # noqa: F401  (defines the ops)
    from bnb_kernels.backends.triton import quant as T

    rows, results = [], []

    def save() -> None:
        with open(f"{out_dir}/bench.json", "w") as f:
            json.dump(results, f, indent=1)
        with open(f"{out_dir}/bench.txt", "w") as f:
            f.write("\n".join(rows) + "\n")

    def bench(case, label, fns, nbytes, check=None):
        state = {"i": 0}

        def run():
            fn = fns[state["i"] % len(fns)]
            state["i"] += 1
            return fn()

        t0 = time.time()
        try:
            run()
            torch.cuda.synchronize()
            first_s = time.time() - t0
            ms = do_bench(run, warmup=10, rep=40, return_mode="median")
            exact = "" if check is None else ("exact" if check() else "MISMATCH")
        except Exception as e:  # report and go on with the other variants
            line = f"{case:31s} {label:30s} FAILED {type(e).__name__}: {str(e)[:120]}"
            extra = ""
        else:
            gbps = nbytes / ms / 1e6
            results.append({"case": case, "variant": label, "us": ms * 1e3, "GBps": gbps, "exact": exact,
                            "first_call_s": first_s})  # fmt: skip
            line = f"{case:31s} {label:30s} {ms * 1e3:8.1f} us {gbps:6.0f} GB/s {exact}"
            extra = f"  (first call {first_s:.1f} s)"
        rows.append(line)
        print(line + extra, flush=True)
        save()

    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__, flush=True)
    src = torch.randn(128 * 2**20, device="cuda")
    dst = torch.empty_like(src)
    bench("copy_512MiB (ceiling)", "torch copy_", [lambda a=src, b=dst: b.copy_(a)], 2 * src.numel() * 4)
    del src, dst
    # 8192 x 8192 bf16 for 4-bit, 64 M float32 for 8-bit (2 inputs each, rotated).
    for case in _cases(8192 * 8192, 64 * 2**20, 2, check=True):
        bench(*case)
    print("defaults:", {k: v.get("variant") for k, v in T.TUNING.items() if "variant" in v}, flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[2] == "--prewarm":
        prewarm(int(sys.argv[3]))
    else:
        main(sys.argv[1])
