"""bnb-kernels: the ``bitsandbytes`` torch.library ops and their backends."""

from __future__ import annotations

__version__ = "0.1.0"

from . import backends, compat, ops  # defines the ops, then registers implementations
from ._native import cpu_features, native_status
from ._registry import backends as backend_table
from ._registry import implementations, selected_backend

__all__ = [
    "__version__",
    "backend_table",
    "backends",
    "compat",
    "cpu_features",
    "implementations",
    "native_status",
    "ops",
    "selected_backend",
]
