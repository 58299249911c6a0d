"""Op schemas and fake kernels, one module per family. Importing this package defines them all."""

from . import quant

__all__ = ["quant"]
