"""bnb-diagnostics: environment report and self-test."""

from __future__ import annotations

__version__ = "0.1.0"

from bnb_kernels.compat import require

require("bnb-diagnostics", __version__, {"bnb_kernels": ("0.1", "0.2")})

from . import packages, report, selftest  # noqa: E402
from .cli import main  # noqa: E402

__all__ = ["__version__", "main", "packages", "report", "selftest"]
