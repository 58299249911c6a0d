"""Native C++ CPU implementations (loaded through bnb_kernels._native)."""

from . import fourbit_matmul, optim

__all__ = ["fourbit_matmul", "optim"]
