"""The fastest a 1-token layer can be under the anchor's timing: per anchor shape, the time of
one reduction kernel that only reads the 4-bit layer's bytes, and one that reads the dense
bf16 weight's bytes, both timed as ``anchor_gpu.py`` times (``do_bench`` median, L2 cleared
before each call by writing a 256 MB buffer). Their ratio bounds the 1-token speed-up of any
kernel that reads the 4-bit weight as fast as torch's reduction reads memory.

    python3 scripts/gpu-read-floor.py      (on the device, after scripts/gpu-env.sh)
"""

import sys

import torch
import triton.testing

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672), (28672, 8192)]


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3


def read_us(nbytes: int) -> float:
    buf = torch.ones(nbytes // 4, dtype=torch.float32, device="cuda")
    return bench(lambda: buf.sum())


def main() -> int:
    tiny = torch.zeros(16, device="cuda")
    print(f"{torch.cuda.get_device_name()}: one tiny kernel {bench(lambda: tiny.add_(1.0)):.1f} us")
    print("K->N | 4-bit bytes read | dense bytes read | bound on the 1-token speed-up")
    for K, N in SHAPES:
        b4 = N * K // 2 + N * K // 64  # packed weight + one 8-bit absmax code per block of 64
        bd = N * K * 2
        t4, td = read_us(b4), read_us(bd)
        print(f"{K}->{N} | {b4 / 1e6:6.1f} MB {t4:7.1f} us | {bd / 1e6:6.1f} MB {td:7.1f} us | {td / t4:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
