"""What the first forward of a freshly loaded quantized model costs on a GPU: per layer shape
and token count, the wall time of the first call (Triton compilation, autotuning, launch
plans) against a warm call, and how many kernels Triton compiled.

    python scripts/gpu-first-call.py [--family 4bit,8bit] [--tokens 37,1] [--hidden 2048]

Run it twice with the same TRITON_CACHE_DIR: the first run shows a user's first session on a
machine (nothing compiled yet), the second one every later session (kernels come from
Triton's disk cache; only the timing of candidates remains). Run on the device after
``source scripts/gpu-env.sh``.
"""

import argparse
import os
import pathlib
import sys
import time

import torch


def cache_entries() -> int:
    root = pathlib.Path(os.environ.get("TRITON_CACHE_DIR", pathlib.Path.home() / ".triton" / "cache"))
    return sum(1 for p in root.glob("*/*.json") if not p.name.startswith("__grp__")) if root.exists() else 0


def llama_shapes(hidden: int) -> list[tuple[int, int]]:
    """(in, out) of the distinct linear layers of a Llama-style block of this width."""
    inter = int(hidden * 2.75) // 256 * 256
    kv = max(hidden // 8, 128)
    return [(hidden, hidden), (hidden, kv), (hidden, inter), (inter, hidden)]


def build(family: str, k: int, n: int):
    import bitsandbytes as bnb

    w = torch.randn(n, k, dtype=torch.float16) * 0.02
    if family == "4bit":
        m = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
        m.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
        return m.cuda(), torch.bfloat16
    m = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=6.0)
    m.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    return m.cuda(), torch.float16


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="4bit,8bit", help="comma list of 4bit, 8bit")
    ap.add_argument("--tokens", default="37,1", help="token counts, in call order (prefill, then decode)")
    ap.add_argument("--hidden", type=int, default=2048, help="model width (shapes of a Llama block)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    tokens = [int(t) for t in args.tokens.split(",")]
    total_first = 0.0
    for family in args.family.split(","):
        if family not in ("4bit", "8bit"):
            print(f"unknown family {family!r}: expected 4bit or 8bit", file=sys.stderr)
            return 2
        for k, n in llama_shapes(args.hidden):
            m, dtype = build(family, k, n)
            for t in tokens:
                x = torch.randn(t, k, dtype=dtype, device="cuda")
                before = cache_entries()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.inference_mode():
                    m(x)
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                with torch.inference_mode():
                    for _ in range(3):
                        m(x)
                    torch.cuda.synchronize()
                    t1 = time.perf_counter()
                    for _ in range(10):
                        m(x)
                    torch.cuda.synchronize()
                warm = (time.perf_counter() - t1) / 10
                total_first += first
                print(
                    f"{family} {k}->{n} tokens {t:5d}: first call {first:7.3f} s, warm {warm * 1e6:8.1f} us, "
                    f"{cache_entries() - before:3d} kernels compiled",
                    flush=True,
                )
    print(f"total of first calls: {total_first:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
