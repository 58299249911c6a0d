"""Pure-torch reference implementations of every op (any device). They are the specification."""

from . import int8, quant

__all__ = ["int8", "quant"]
