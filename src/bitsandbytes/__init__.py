"""Drop-in ``bitsandbytes`` namespace: thin re-exports of the bnb-* packages, no logic."""

from __future__ import annotations

from importlib import metadata as _metadata

from . import functional

try:
    __version__ = _metadata.version("bitsandbytes")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.51.0"

__all__ = ["__version__", "functional"]
