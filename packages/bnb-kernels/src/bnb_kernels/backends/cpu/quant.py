"""Native CPU kernels of blockwise 8-bit and 4-bit quantization (``csrc/quant.cpp``).

Bit-identical to the reference backend (``backends/reference/quant.py``) on every SIMD path.
The path is the best the CPU has (AVX-512, else AVX2, else scalar); the environment variable
``BNB_CPU_SIMD`` (``scalar``, ``avx2``, ``avx512``) caps it, and the ``simd=`` argument of the
functions below does the same per call (tests compare the paths that way). Arguments are
checked here before any C call; the C side checks them again and returns an error code
instead of touching memory it was not given. Inputs the native kernels do not cover (a code
of other than 256 values, a block size that is not a multiple of 16) go to the reference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import torch

from ... import _native
from ..._registry import register
from ...codebooks import codebook_table, fourbit_search_table, fourbit_table
from ...ops.quant import FLOAT_DTYPES, QUANT_STORAGE_DTYPES, num_blocks
from ..reference import quant as reference
from ._alloc import empty_output

__all__ = [
    "SIMD_ENV",
    "dequantize_4bit",
    "dequantize_4bit_out",
    "dequantize_blockwise",
    "dequantize_blockwise_out",
    "quantize_4bit",
    "quantize_blockwise",
    "simd_level",
]

SIMD_ENV = "BNB_CPU_SIMD"
SIMD_LEVELS = {"auto": 0, "scalar": 1, "avx2": 2, "avx512": 3}
_LEVEL_NAMES = {v: k for k, v in SIMD_LEVELS.items()}
_MAX_NATIVE_BLOCKSIZE = 1 << 20

_P, _I32, _I64 = _native.c_ptr, _native.c_i32, _native.c_i64


@cache
def _lib() -> dict[str, Any]:
    fn = _native.function
    return {
        "level": fn("bnb_quant_simd_level", [_I32]),
        "q8": fn("bnb_quantize_blockwise", [_P, _I32, _I64, _I64, _P, _P, _P, _I32, _I32]),
        "dq8": fn("bnb_dequantize_blockwise", [_P, _P, _P, _I64, _I64, _P, _I32, _I32, _I32]),
        "q4": fn("bnb_quantize_4bit", [_P, _I32, _I64, _I64, _P, _P, _P, _P, _I32, _I32]),
        "dq4": fn("bnb_dequantize_4bit", [_P, _P, _P, _I64, _I64, _P, _I32, _I32, _I32]),
    }


def _requested(simd: str | None) -> int:
    name = (simd if simd is not None else os.environ.get(SIMD_ENV, "auto")).strip().lower() or "auto"
    if name not in SIMD_LEVELS:
        raise ValueError(f"SIMD path must be one of {sorted(SIMD_LEVELS)}, got {name!r}")
    return SIMD_LEVELS[name]


def simd_level(simd: str | None = None) -> str:
    """The SIMD path a request (``None``: ``BNB_CPU_SIMD`` or auto) runs on this CPU."""
    return _LEVEL_NAMES[_lib()["level"](_requested(simd))]


def _call(name: str, *args: Any) -> None:
    _native.check(_lib()[name](*args), name)


# --------------------------------------------------------------------------------------
# Argument checks (before any C call)
# --------------------------------------------------------------------------------------


def _check_cpu(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU for the native backend, got {t.device}")


def _check_blocksize(blocksize: int) -> None:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize <= 0:
        raise ValueError(f"blocksize must be a positive int, got {blocksize!r}")


def _native_blocksize(blocksize: int) -> bool:
    return blocksize % 16 == 0 and blocksize <= _MAX_NATIVE_BLOCKSIZE


def _check_float_dtype(name: str, dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {dtype}")


def _absmax_f32(absmax: torch.Tensor, blocks: int) -> torch.Tensor:
    if not absmax.is_floating_point():
        raise TypeError(f"absmax must be a floating point tensor, got {absmax.dtype}")
    if absmax.numel() < blocks:
        raise ValueError(f"absmax must hold at least {blocks} values (one per block), got {absmax.numel()}")
    return absmax.reshape(-1).to(torch.float32).contiguous()


# --------------------------------------------------------------------------------------
# 8-bit blockwise
# --------------------------------------------------------------------------------------


def quantize_blockwise_impl(
    A: torch.Tensor, code: torch.Tensor, blocksize: int, simd: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_cpu(A=A, code=code)
    _check_float_dtype("A", A.dtype)
    _check_blocksize(blocksize)
    if not code.is_floating_point() or code.dim() != 1 or not 1 <= code.numel() <= 256:
        raise ValueError(f"code must be a 1-d float tensor of at most 256 values, got {code.dtype} {tuple(code.shape)}")
    if code.numel() != 256 or not _native_blocksize(blocksize):
        return reference.quantize_blockwise(A, code, blocksize)
    A_c = A.contiguous()
    n = A_c.numel()
    lut = codebook_table(code).grid_lut
    assert lut.numel() == 65540 and lut.dtype == torch.uint8  # the C kernel gathers 4 bytes at any index
    absmax = torch.empty(num_blocks(n, blocksize), dtype=torch.float32)
    out = torch.empty(A.shape, dtype=torch.uint8)
    _call(
        "q8",
        A_c.data_ptr(),
        _native.DTYPE_CODES[A.dtype],
        n,
        blocksize,
        lut.data_ptr(),
        absmax.data_ptr(),
        out.data_ptr(),
        _native.num_threads(),
        _requested(simd),
    )
    return out, absmax


def _dequantize_blockwise_into(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, out: torch.Tensor, simd: str | None
) -> None:
    """Dequantize into ``out`` (contiguous, dtype checked, numel of A)."""
    n = A.numel()
    absmax32 = _absmax_f32(absmax, num_blocks(n, blocksize))
    code32 = code.reshape(-1).to(torch.float32).contiguous()
    A_c = A.contiguous()
    _call(
        "dq8",
        A_c.data_ptr(),
        code32.data_ptr(),
        absmax32.data_ptr(),
        n,
        blocksize,
        out.data_ptr(),
        _native.DTYPE_CODES[out.dtype],
        _native.num_threads(),
        _requested(simd),
    )


def _check_dequantize_blockwise(A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> bool:
    """Checks the arguments; True when the native kernel serves them."""
    _check_cpu(A=A, absmax=absmax, code=code)
    if A.dtype != torch.uint8:
        raise TypeError(f"A must be uint8, got {A.dtype}")
    _check_blocksize(blocksize)
    if not code.is_floating_point() or code.numel() > 256 or code.numel() == 0:
        raise ValueError(f"code must be a float tensor of at most 256 values, got {code.dtype} {tuple(code.shape)}")
    _absmax_f32(absmax, num_blocks(A.numel(), blocksize))
    return code.numel() == 256 and _native_blocksize(blocksize)


def dequantize_blockwise_impl(
    A: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    dtype: torch.dtype,
    simd: str | None = None,
) -> torch.Tensor:
    _check_float_dtype("dtype", dtype)
    if not _check_dequantize_blockwise(A, absmax, code, blocksize):
        return reference.dequantize_blockwise(A, absmax, code, blocksize, dtype)
    out = empty_output(A.shape, dtype)
    _dequantize_blockwise_into(A, absmax, code, blocksize, out, simd)
    return out


def dequantize_blockwise_out_impl(
    A: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    dtype: torch.dtype,
    out: torch.Tensor,
    simd: str | None = None,
) -> None:
    _check_float_dtype("dtype", dtype)
    _check_cpu(out=out)
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(A.shape):
        raise ValueError(f"out must have shape {tuple(A.shape)}, got {tuple(out.shape)}")
    if not _check_dequantize_blockwise(A, absmax, code, blocksize):
        reference.dequantize_blockwise_out(A, absmax, code, blocksize, dtype, out)
        return
    if out.is_contiguous():
        _dequantize_blockwise_into(A, absmax, code, blocksize, out, simd)
    else:
        tmp = torch.empty(A.shape, dtype=dtype)
        _dequantize_blockwise_into(A, absmax, code, blocksize, tmp, simd)
        out.copy_(tmp)


# --------------------------------------------------------------------------------------
# 4-bit (NF4 / FP4)
# --------------------------------------------------------------------------------------


def _check_quant_type(quant_type: str) -> None:
    if quant_type not in ("nf4", "fp4"):
        raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")


@cache
def _fourbit_tables(quant_type: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mids, order = fourbit_search_table(quant_type)
    return mids.contiguous(), order.to(torch.int32).contiguous(), fourbit_table(quant_type).contiguous()


def quantize_4bit_impl(
    A: torch.Tensor, blocksize: int, quant_type: str, quant_storage: torch.dtype, simd: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_cpu(A=A)
    _check_float_dtype("A", A.dtype)
    _check_blocksize(blocksize)
    _check_quant_type(quant_type)
    if quant_storage not in QUANT_STORAGE_DTYPES:
        raise TypeError(f"quant_storage must be one of {list(QUANT_STORAGE_DTYPES)}, got {quant_storage}")
    n = A.numel()
    packed_bytes = (n + 1) // 2
    if packed_bytes % quant_storage.itemsize:
        raise ValueError(f"{n} values pack into {packed_bytes} bytes, not a whole number of {quant_storage} values")
    if not _native_blocksize(blocksize):
        return reference.quantize_4bit(A, blocksize, quant_type, quant_storage)
    mids, order, _ = _fourbit_tables(quant_type)
    A_c = A.contiguous()
    absmax = torch.empty(num_blocks(n, blocksize), dtype=torch.float32)
    packed = torch.empty(packed_bytes, dtype=torch.uint8)
    _call(
        "q4",
        A_c.data_ptr(),
        _native.DTYPE_CODES[A.dtype],
        n,
        blocksize,
        mids.data_ptr(),
        order.data_ptr(),
        absmax.data_ptr(),
        packed.data_ptr(),
        _native.num_threads(),
        _requested(simd),
    )
    return packed.view(quant_storage).unsqueeze(1), absmax


def _check_dequantize_4bit(
    A: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: Sequence[int]
) -> tuple[int, torch.Tensor, torch.Tensor]:
    _check_cpu(A=A, absmax=absmax)
    _check_blocksize(blocksize)
    _check_quant_type(quant_type)
    if any((not isinstance(s, int)) or s < 0 for s in shape):
        raise ValueError(f"shape must be a list of non-negative ints, got {list(shape)}")
    n = math.prod(shape)
    packed = A.contiguous().reshape(-1).view(torch.uint8)
    if packed.numel() < (n + 1) // 2:
        raise ValueError(f"A holds {packed.numel()} bytes; a 4-bit tensor of shape {list(shape)} needs {(n + 1) // 2}")
    return n, packed, _absmax_f32(absmax, num_blocks(n, blocksize))


def _dequantize_4bit_into(
    packed: torch.Tensor,
    absmax32: torch.Tensor,
    n: int,
    blocksize: int,
    quant_type: str,
    out: torch.Tensor,
    simd: str | None,
) -> None:
    _, _, table = _fourbit_tables(quant_type)
    _call(
        "dq4",
        packed.data_ptr(),
        table.data_ptr(),
        absmax32.data_ptr(),
        n,
        blocksize,
        out.data_ptr(),
        _native.DTYPE_CODES[out.dtype],
        _native.num_threads(),
        _requested(simd),
    )


def dequantize_4bit_impl(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    simd: str | None = None,
) -> torch.Tensor:
    _check_float_dtype("dtype", dtype)
    n, packed, absmax32 = _check_dequantize_4bit(A, absmax, blocksize, quant_type, shape)
    if not _native_blocksize(blocksize):
        return reference.dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype)
    out = empty_output(tuple(shape), dtype)
    _dequantize_4bit_into(packed, absmax32, n, blocksize, quant_type, out, simd)
    return out


def dequantize_4bit_out_impl(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    out: torch.Tensor,
    simd: str | None = None,
) -> None:
    _check_float_dtype("dtype", dtype)
    _check_cpu(out=out)
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    n, packed, absmax32 = _check_dequantize_4bit(A, absmax, blocksize, quant_type, shape)
    if not _native_blocksize(blocksize):
        reference.dequantize_4bit_out(A, absmax, blocksize, quant_type, shape, dtype, out)
        return
    if out.is_contiguous():
        _dequantize_4bit_into(packed, absmax32, n, blocksize, quant_type, out, simd)
    else:
        tmp = torch.empty(tuple(shape), dtype=dtype)
        _dequantize_4bit_into(packed, absmax32, n, blocksize, quant_type, tmp, simd)
        out.copy_(tmp)


# --------------------------------------------------------------------------------------
# Registration (the op schemas fix the signatures)
# --------------------------------------------------------------------------------------


@register("quantize_blockwise", "cpu", "cpu", available=_native.available)
def quantize_blockwise(A: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    return quantize_blockwise_impl(A, code, blocksize)


@register("dequantize_blockwise", "cpu", "cpu", available=_native.available)
def dequantize_blockwise(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype
) -> torch.Tensor:
    return dequantize_blockwise_impl(A, absmax, code, blocksize, dtype)


@register("dequantize_blockwise.out", "cpu", "cpu", available=_native.available)
def dequantize_blockwise_out(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype, out: torch.Tensor
) -> None:
    dequantize_blockwise_out_impl(A, absmax, code, blocksize, dtype, out)


@register("quantize_4bit", "cpu", "cpu", available=_native.available)
def quantize_4bit(
    A: torch.Tensor, blocksize: int, quant_type: str, quant_storage: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    return quantize_4bit_impl(A, blocksize, quant_type, quant_storage)


@register("dequantize_4bit", "cpu", "cpu", available=_native.available)
def dequantize_4bit(
    A: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    return dequantize_4bit_impl(A, absmax, blocksize, quant_type, shape, dtype)


@register("dequantize_4bit.out", "cpu", "cpu", available=_native.available)
def dequantize_4bit_out(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    out: torch.Tensor,
) -> None:
    dequantize_4bit_out_impl(A, absmax, blocksize, quant_type, shape, dtype, out)
