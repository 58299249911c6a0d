"""Time one QLoRA-style step of a CPU ``Linear4bit`` (forward, then backward to the input,
which dequantizes the 4-bit weight): the median over repeated steps, on 2 threads.

    uv run python scripts/time-cpu-qlora-step.py [--features 4096] [--tokens 32] [--steps 15]

Compare ``BNB_CPU_OUTPUT_CACHE_MB=0`` (a fresh dequantized weight every step) with the default.
"""

import argparse
import os
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=4096, help="in and out features of the layer")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import bitsandbytes as bnb

    n = args.features
    m = bnb.nn.Linear4bit(n, n, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    m.weight = bnb.nn.Params4bit(torch.randn(n, n) * 0.02, requires_grad=False, quant_type="nf4")
    m = m.to("cpu")  # quantizes the weight
    x = torch.randn(args.tokens, n, dtype=torch.bfloat16, requires_grad=True)

    def step() -> None:
        m(x).float().sum().backward()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    cache = os.environ.get("BNB_CPU_OUTPUT_CACHE_MB", "default")
    print(f"{n}x{n} nf4, {args.tokens} tokens, output cache {cache}: {times[len(times) // 2] * 1e3:.2f} ms per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
