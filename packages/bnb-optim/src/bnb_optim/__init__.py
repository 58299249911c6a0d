"""bnb-optim: 8-bit, 32-bit and paged optimizers."""

from __future__ import annotations

__version__ = "0.1.0"

from bnb_kernels.compat import require

require("bnb-optim", __version__, {"bnb_kernels": ("0.1", "0.2"), "bnb_quant": ("0.1", "0.2")})

__all__ = ["__version__"]
