"""Paged optimizer state: CUDA managed (unified) memory that the driver pages out to host RAM
under GPU memory pressure, prefetched to the GPU before each update.

Allocation goes through ``cudaMallocManaged`` of the CUDA runtime that torch loaded (ctypes);
the tensor wraps it with ``__cuda_array_interface__`` and frees it when the last view dies.
Without CUDA (parameters on the CPU) the state lives in ordinary memory and one warning says so.
"""

from __future__ import annotations

import ctypes
import os
import warnings

import torch

__all__ = ["PAGED_MIN_NUMEL", "is_paged", "managed_empty", "paged_available", "prefetch"]

# Smaller states stay in ordinary device memory (as in the reference release).
PAGED_MIN_NUMEL = 100_000

_cudart: ctypes.CDLL | None = None
_cudart_tried = False
_runtime_version = 0
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class _MemLocation(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


def _find_cudart() -> ctypes.CDLL | None:
    global _cudart, _cudart_tried, _runtime_version
    if _cudart_tried:
        return _cudart
    _cudart_tried = True
    if not torch.cuda.is_available():
        return None
    torch.cuda.init()
    candidates: list[str] = []
    try:  # the runtime torch already loaded
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if "libcudart" in os.path.basename(path) and path not in candidates:
                    candidates.append(path)
    except OSError:
        pass
    candidates += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            lib.cudaMallocManaged.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
            lib.cudaFree.argtypes = [ctypes.c_void_p]
            version = ctypes.c_int(0)
            lib.cudaRuntimeGetVersion(ctypes.byref(version))
            _runtime_version = version.value
            _cudart = lib
            return lib
        except (OSError, AttributeError):
            continue
    return None


def paged_available() -> bool:
    """True when CUDA managed memory can be allocated."""
    return _find_cudart() is not None


class _ManagedBlock:
    """Owner of one managed allocation; exposes it to torch as a CUDA array of bytes."""

    def __init__(self, nbytes: int, device: torch.device) -> None:
        lib = _find_cudart()
        if lib is None:
            raise RuntimeError("CUDA runtime not found: cannot allocate managed memory")
        self._lib = lib
        self.ptr = ctypes.c_void_p()
        self.nbytes = max(int(nbytes), 1)
        with torch.cuda.device(device):
            rc = lib.cudaMallocManaged(ctypes.byref(self.ptr), self.nbytes, 1)  # cudaMemAttachGlobal
        if rc != 0 or not self.ptr.value:
            raise torch.cuda.OutOfMemoryError(f"cudaMallocManaged of {self.nbytes} bytes failed with error {rc}")
        self.__cuda_array_interface__ = {
            "shape": (self.nbytes,),
            "typestr": "|u1",
            "data": (self.ptr.value, False),
            "version": 3,
            "strides": None,
        }

    # A deep copy of a paged tensor owns ordinary memory of its own: it needs no handle.
    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __del__(self) -> None:
        if getattr(self, "ptr", None) is not None and self.ptr.value:
            try:
                self._lib.cudaFree(self.ptr)
            except Exception:
                pass
            self.ptr = ctypes.c_void_p()


def managed_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor in CUDA managed memory (zero-filled), or ordinary memory without CUDA."""
    device = torch.device(device)
    numel = 1
    for s in shape:
        numel *= int(s)
    if device.type != "cuda" or not paged_available():
        _warn_once(
            "fallback",
            "bnb-optim: paged optimizer state needs CUDA managed memory; the parameters are not on a CUDA "
            "device (or the CUDA runtime was not found), so the state lives in ordinary memory.",
        )
        return torch.zeros(shape, dtype=dtype, device=device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    block = _ManagedBlock(numel * itemsize, device)
    raw = torch.as_tensor(block, device=device)
    t = raw[: numel * itemsize].view(dtype).view(shape)
    t.zero_()
    t.is_paged = True  # type: ignore[attr-defined]
    t._bnb_managed_block = block  # type: ignore[attr-defined]  # keeps the allocation alive
    return t


def is_paged(t: torch.Tensor) -> bool:
    return bool(getattr(t, "is_paged", False))


def prefetch(t: torch.Tensor, to_cpu: bool = False) -> None:
    """Ask the driver to move a managed tensor to its GPU (or to host memory with ``to_cpu``),
    ordered on the current stream."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"prefetch needs a tensor, got {type(t).__name__}")
    if not is_paged(t):
        return
    lib = _find_cudart()
    if lib is None:
        return
    stream = ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream)
    ptr = ctypes.c_void_p(t.data_ptr())
    nbytes = ctypes.c_size_t(t.numel() * t.element_size())
    try:
        if _runtime_version >= 13000:
            fn = lib.cudaMemPrefetchAsync
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, _MemLocation, ctypes.c_uint, ctypes.c_void_p]
            # cudaMemLocationTypeDevice = 1, cudaMemLocationTypeHost = 2
            where = _MemLocation(2, 0) if to_cpu else _MemLocation(1, t.device.index or 0)
            rc = fn(ptr, nbytes, where, 0, stream)
        else:
            fn = lib.cudaMemPrefetchAsync
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
            rc = fn(ptr, nbytes, -1 if to_cpu else (t.device.index or 0), stream)  # -1: cudaCpuDeviceId
    except AttributeError:
        rc = -1
    if rc != 0:
        if rc > 0:
            lib.cudaGetLastError()  # clear the sticky-free error so torch does not see it
        _warn_once("prefetch", f"bnb-optim: cudaMemPrefetchAsync failed (error {rc}); paged state is fetched on demand")
