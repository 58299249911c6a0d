"""The one place that loads the native CPU library and binds its C functions.

The library (``libbnb_native.so``) has a C ABI and is loaded with ctypes. An editable
install serves the Python files from the source tree while the library lands in
site-packages, so every entry of the package ``__path__`` is searched. ``BNB_NATIVE_LIB``
names a library file explicitly. If nothing loads, CPU ops fall back to the reference
backend with one warning, and ``native_status()`` says why.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# Bumped whenever a C signature changes; the library reports its own in bnb_abi_version().
ABI_VERSION = 1
LIB_ENV = "BNB_NATIVE_LIB"
_LIB_NAMES = {"linux": "libbnb_native.so", "darwin": "libbnb_native.dylib", "win32": "bnb_native.dll"}

_lib: ctypes.CDLL | None = None
_status: str = "not loaded yet"
_tried = False

c_ptr = ctypes.c_void_p
c_i64 = ctypes.c_int64
c_i32 = ctypes.c_int32
c_f32 = ctypes.c_float
c_f64 = ctypes.c_double

# dtype codes shared with csrc/common.h
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def _candidates() -> list[Path]:
    explicit = os.environ.get(LIB_ENV)
    if explicit:
        return [Path(explicit)]
    import bnb_kernels

    name = _LIB_NAMES.get(sys.platform, "libbnb_native.so")
    return [Path(entry) / name for entry in bnb_kernels.__path__]


def _load() -> ctypes.CDLL | None:
    global _lib, _status, _tried
    if _tried:
        return _lib
    _tried = True
    errors = []
    for path in _candidates():
        if not path.is_file():
            errors.append(f"{path}: not found")
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        lib.bnb_abi_version.restype = c_i32
        lib.bnb_cpu_features.restype = c_i32
        found = lib.bnb_abi_version()
        if found != ABI_VERSION:
            errors.append(f"{path}: ABI version {found}, this Python code needs {ABI_VERSION} (rebuild bnb-kernels)")
            continue
        _lib = lib
        _status = f"loaded {path}"
        return _lib
    _status = "; ".join(errors) or "no candidate paths"
    if os.environ.get("BNB_BACKEND", "").strip().lower() != "reference":
        warnings.warn(
            "bnb-kernels: the native CPU library did not load, CPU ops use the slower pure-torch "
            f"reference instead ({_status}). Reinstall bnb-kernels to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def available() -> bool:
    """True when the native library is loaded (loads it on first call)."""
    return _load() is not None


def native_status() -> str:
    """Where the native library was loaded from, or why it was not."""
    _load()
    return _status


def lib() -> ctypes.CDLL:
    loaded = _load()
    if loaded is None:
        raise RuntimeError(f"bnb-kernels native library is not available: {_status}")
    return loaded


def function(name: str, argtypes: Sequence[Any], restype: Any = c_i32) -> Any:
    """Bind ``name`` from the native library with its C signature (call once per module)."""
    fn = getattr(lib(), name)
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


def cpu_features() -> dict[str, bool]:
    """Instruction sets the native library detected and uses."""
    if not available():
        return {}
    bits = lib().bnb_cpu_features()
    return {"avx2": bool(bits & 1), "avx512f": bool(bits & 2), "avx512bw": bool(bits & 4), "avx512bf16": bool(bits & 8)}


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def num_threads() -> int:
    return max(1, torch.get_num_threads())


def check(code: int, what: str) -> None:
    """Native functions return 0 on success, a negative code for invalid arguments."""
    if code != 0:
        raise RuntimeError(f"bnb-kernels native {what} failed with code {code}")
