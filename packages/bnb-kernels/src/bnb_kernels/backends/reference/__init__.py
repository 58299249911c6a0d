"""Pure-torch reference implementations of every op (any device). They are the specification."""

from . import fourbit_matmul, int8, optim, quant

__all__ = ["fourbit_matmul", "int8", "optim", "quant"]
