"""Launches the tensor-core GEMV and the permute-decode GEMV a few times each on one anchor
shape, for Nsight Compute to profile (what limits the mma kernel at 1 token):

    source scripts/gpu-env.sh && ncu --clock-control none -k regex:"mma_kernel|gemv_kernel" \\
        --launch-skip 2 --launch-count 2 --section SpeedOfLight --section WarpStateStats \\
        --section Occupancy python3 scripts/gpu-profile-mma.py [--tokens 1] [--k 8192 --n 28672]
"""

import argparse
import importlib.util
import os
import sys

import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "packages", "bnb-kernels", "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1)
    ap.add_argument("--k", type=int, default=8192)
    ap.add_argument("--n", type=int, default=28672)
    ap.add_argument(
        "--mma", default="8,1,4,128,0,0", help="the mma config (warps, split, chunks, registers, prefetch, interleave)"
    )
    ap.add_argument("--gemv", default="4,2048,2,1,0,1", help="the GEMV config")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu-profile-mma: no CUDA device", file=sys.stderr)
        return 2
    import bnb_kernels  # noqa: F401
    from bnb_kernels.backends.triton import fourbit_matmul as T

    spec = importlib.util.spec_from_file_location("check", os.path.join(HERE, "gpu-check-mma.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    M, K, N = args.tokens, args.k, args.n
    _, w, meta, _ = check.quantized(N, K)
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    out = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
    configs = [("mma", *map(int, args.mma.split(","))), ("gemv", *map(int, args.gemv.split(",")))]
    for cfg in configs:
        plan = T._Plan(cfg, M, N, K, meta, False)
        for _ in range(4):
            plan(x, w, meta, None, out, M, N, K)
    torch.cuda.synchronize()
    print("launched", configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
