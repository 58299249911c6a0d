"""Run the anchor's Linear8bitLt section (``../shared/bench/anchor_gpu.py``, carried to
``.device/bench/``) in this process, then print which path each int8 shape took and the
path races' timings: explains an anchor cell that moved.

    python3 scripts/gpu-anchor-int8-paths.py [--shapes 1]   (on the device, after gpu-env.sh)
"""

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=int, default=1, help="how many of the anchor's int8 shapes to run")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("anchor_gpu", ROOT / ".device/bench/anchor_gpu.py")
    anchor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(anchor)
    anchor.SHAPES[:] = anchor.SHAPES[: args.shapes]
    import bitsandbytes as bnb
    from bnb_kernels.backends.triton import int8 as T8

    anchor.linear8bit(bnb)
    for key, times in T8.tuning_timings().items():
        if key[0] in ("one_row", "small_rows", "mid_rows"):
            print(f"race {key}: " + ", ".join(f"{k} {v * 1e3:.1f} us" for k, v in times.items()))
    for key, best in T8.best_configs().items():
        print(f"config {key}: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
