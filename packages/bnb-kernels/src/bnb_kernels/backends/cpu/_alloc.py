"""Outputs of the CPU kernels, backed by transparent huge pages when large.

A fresh multi-megabyte ``torch.empty`` is paid for at first write, one 4 KiB page fault at a
time: for a 4096x4096 dequantized weight that costs more than the dequantization itself (the
2-core reference machine: 35 ms to fault in 64 MiB against 2 ms to write it). An anonymous
mapping advised ``MADV_HUGEPAGE`` faults in 2 MiB at a time. The tensor keeps the mapping
alive and unmaps it when freed, like any other storage; only its storage cannot be resized.
"""

import math
import mmap

import torch

__all__ = ["HUGE_OUTPUT_BYTES", "empty_output"]

HUGE_OUTPUT_BYTES = 8 << 20  # below this, page faults are a small share of the work
_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap.mmap, "madvise")


def empty_output(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized contiguous CPU tensor; huge-page backed from ``HUGE_OUTPUT_BYTES`` up."""
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _HUGE_PAGES or nbytes < HUGE_OUTPUT_BYTES:
        return torch.empty(shape, dtype=dtype)
    try:
        region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # no memory for the mapping, or the advice is refused
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(region, dtype=dtype).view(shape)
