"""Op schemas and fake kernels, one module per family. Importing this package defines them all."""

from . import fourbit_matmul, int8, optim, quant

__all__ = ["fourbit_matmul", "int8", "optim", "quant"]
