"""Pure-torch reference implementations of every op (any device). They are the specification."""

from . import quant

__all__ = ["quant"]
