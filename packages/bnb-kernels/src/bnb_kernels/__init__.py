"""bnb-kernels: the ``bitsandbytes`` torch.library ops and their backends."""

from __future__ import annotations

__version__ = "0.1.0"

from . import backends, compat, ops  # defines the ops, then registers implementations
from ._native import cpu_features, native_status
from ._registry import backends as backend_table
from ._registry import implementations, selected_backend
from .backends.cpu._alloc import cached_output_bytes, release_cached_outputs

__all__ = [
    "__version__",
    "backend_table",
    "backends",
    "cached_output_bytes",
    "compat",
    "cpu_features",
    "implementations",
    "native_status",
    "ops",
    "release_cached_outputs",
    "selected_backend",
]
