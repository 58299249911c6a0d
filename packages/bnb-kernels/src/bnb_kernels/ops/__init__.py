"""Op schemas and fake kernels, one module per family. Importing this package defines them all."""

from . import int8, quant

__all__ = ["int8", "quant"]
