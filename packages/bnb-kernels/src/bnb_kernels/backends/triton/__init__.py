"""Triton GPU implementations (CUDA). Registered only when Triton imports."""

from ._common import HAS_TRITON

__all__: list[str] = []

if HAS_TRITON:
    from . import fourbit_matmul, int8, optim, quant

    __all__ += ["fourbit_matmul", "int8", "optim", "quant"]
