"""Outputs of the CPU kernels: large ones come from a small cache of huge-page mappings.

A fresh multi-megabyte ``torch.empty`` is paid for at first write, one 4 KiB page fault at a
time: for a 4096x4096 dequantized weight that costs more than the dequantization itself (the
2-core reference machine: 35 ms to fault in 64 MiB against 2 ms to write it). An anonymous
mapping advised ``MADV_HUGEPAGE`` faults in 2 MiB at a time, but the OS still zeroes every
page of a fresh mapping, which for a 64 MiB output costs more than the dequantization too
(6.6-11.5 ms against 2.7 ms into an existing tensor on that machine).

So a mapping outlives its tensor: once no tensor uses it, the next output of the same size
(rounded up to 2 MiB) takes it over, already faulted in. The QLoRA backward dequantizes the
same weights at every step, and so does any loop over a model's layers. At most
``BNB_CPU_OUTPUT_CACHE_MB`` (default 256) of unused mappings are kept, the least recently
used dropped first; 0 keeps none. The tensors are ordinary tensors whose storage cannot be
resized; ``bnb_kernels.release_cached_outputs()`` drops the unused mappings at once.
"""

import math
import mmap
import os
import sys
import threading

import torch

__all__ = ["CACHE_ENV", "HUGE_OUTPUT_BYTES", "cached_output_bytes", "empty_output", "release_cached_outputs"]

HUGE_OUTPUT_BYTES = 8 << 20  # below this, page faults are a small share of the work
CACHE_ENV = "BNB_CPU_OUTPUT_CACHE_MB"
_ROUND = 2 << 20  # a huge page: sizes that differ by less share a mapping
_MAPPINGS = hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MAP_PRIVATE")
_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap.mmap, "madvise")

_lock = threading.Lock()
_regions: list[mmap.mmap] = []  # every mapping this module made and still holds, least recently used first


def _refs(i: int) -> int:
    return sys.getrefcount(_regions[i])


def _new_mapping(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _probe_free_refs() -> int:
    """References to a mapping that only ``_regions`` holds, as ``_refs`` counts them."""
    if not _MAPPINGS:
        return 0
    _regions.append(_new_mapping(mmap.PAGESIZE))
    try:
        return _refs(len(_regions) - 1)
    finally:
        _regions.pop().close()


# A tensor made by torch.frombuffer holds one reference to its mapping until its storage is
# freed (views share that storage), so a mapping with no more references than this is free.
_FREE_REFS = _probe_free_refs()


def _unused(i: int) -> bool:
    return _refs(i) <= _FREE_REFS


# Reuse is decided by reference counts, which a free-threaded build may defer: there, no cache.
_REFCOUNTS_EXACT = getattr(sys, "_is_gil_enabled", lambda: True)()


def _cache_limit() -> int:
    if not _REFCOUNTS_EXACT:
        return 0
    value = os.environ.get(CACHE_ENV, "")
    if not value.strip():
        return 256 << 20
    try:
        mib = float(value)
    except ValueError:
        raise ValueError(f"{CACHE_ENV} must be a number of MiB (0 keeps no unused outputs), got {value!r}") from None
    if not (math.isfinite(mib) and mib >= 0):
        raise ValueError(f"{CACHE_ENV} must be a finite number of MiB >= 0, got {value!r}")
    return int(mib * (1 << 20))


def _trim(limit: int) -> None:
    """Drop unused mappings, least recently used first, until at most ``limit`` bytes of
    them remain. Called with the lock held."""
    free = [i for i in range(len(_regions)) if _unused(i)]
    total = sum(len(_regions[i]) for i in free)
    drop = []
    for i in free:
        if total <= limit:
            break
        total -= len(_regions[i])
        drop.append(i)
    for i in reversed(drop):
        _regions.pop(i).close()


def empty_output(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized contiguous CPU tensor; from ``HUGE_OUTPUT_BYTES`` up backed by a
    cached huge-page mapping (see the module's docstring)."""
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if not _MAPPINGS or nbytes < HUGE_OUTPUT_BYTES or nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    size = -(-nbytes // _ROUND) * _ROUND
    limit = _cache_limit()
    with _lock:
        region = None
        if limit == 0:
            _trim(0)  # no cache: nothing unused is kept, nothing reused
        for i in range(len(_regions)):
            if len(_regions[i]) == size and _unused(i):
                region = _regions.pop(i)
                break
        if region is None:
            try:
                region = _new_mapping(size)
                if _HUGE_PAGES:
                    region.madvise(mmap.MADV_HUGEPAGE)
            except (OSError, ValueError):  # no memory for the mapping, or the advice is refused
                return torch.empty(shape, dtype=dtype)
        t = torch.frombuffer(region, dtype=dtype, count=numel).view(shape)
        _regions.append(region)  # most recently used last
        del region
        _trim(limit)
    return t


def cached_output_bytes() -> tuple[int, int]:
    """(bytes of mappings in use by tensors, bytes of unused mappings kept for reuse)."""
    with _lock:
        free = [_unused(i) for i in range(len(_regions))]
        sizes = [len(r) for r in _regions]
    used = sum(s for s, f in zip(sizes, free) if not f)
    return used, sum(sizes) - used


def release_cached_outputs() -> int:
    """Unmap every unused cached output mapping now; returns the bytes released."""
    with _lock:
        before = sum(len(r) for r in _regions)
        _trim(0)
        return before - sum(len(r) for r in _regions)
