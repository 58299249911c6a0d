"""Native C++ CPU implementations (loaded through bnb_kernels._native)."""

from . import fourbit_matmul, int8, optim, quant

__all__ = ["fourbit_matmul", "int8", "optim", "quant"]
