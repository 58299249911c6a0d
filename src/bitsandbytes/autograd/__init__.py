"""``bitsandbytes.autograd``: the autograd functions of bnb-nn (see ``._functions``)."""

from __future__ import annotations

from . import _functions

__all__ = ["_functions"]
