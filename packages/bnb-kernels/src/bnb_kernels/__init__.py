"""bnb-kernels: the ``bitsandbytes`` torch.library ops and their backends."""

from __future__ import annotations

__version__ = "0.1.0"

from . import backends, compat, ops  # noqa: E402  (defines the ops, then registers implementations)
from ._native import cpu_features, native_status  # noqa: E402
from ._registry import backends as backend_table  # noqa: E402
from ._registry import implementations, selected_backend  # noqa: E402

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
