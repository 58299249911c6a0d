"""Helpers shared by the Triton kernel families: import guard, availability, device checks.

Triton kernels run on CUDA GPUs. Under ``TRITON_INTERPRET=1`` (set before Triton is
imported) the same kernels run on CPU tensors through Triton's interpreter; the tests use
that to check the kernel logic on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

try:  # Triton ships with torch on Linux x86-64 only.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the platform
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "available", "check_device", "device_guard", "interpreting", "tl", "triton"]


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available() -> bool:
    """The Triton backend serves CUDA devices when Triton imports and CUDA is usable."""
    return HAS_TRITON and torch.cuda.is_available()


def check_device(name: str, t: torch.Tensor, device: torch.device | None = None) -> None:
    """Raise ValueError unless ``t`` is on a device these kernels can run on (and on ``device``)."""
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {t.device}")
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and interpreting():
        return
    raise ValueError(f"{name} must be a CUDA tensor for the Triton backend, got device {t.device}")


@contextlib.contextmanager
def device_guard(device: torch.device) -> Iterator[None]:
    """Make ``device`` current while launching (Triton launches on the current CUDA device)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):
            yield
    else:
        yield
