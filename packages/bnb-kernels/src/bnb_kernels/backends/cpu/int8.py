"""Native CPU implementations of the LLM.int8() ops.

Row quantization and the dequantization of the int32 product run in ``csrc/int8.cpp``
(AVX-512 / AVX2 picked at run time, OpenMP over rows). The int8 x int8 -> int32 product
uses ``torch._int_mm``, which on the CPU is oneDNN's VNNI/AMX kernel and faster than a
hand-written loop; the result is exact either way.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from ... import _native
from ..._registry import register
from ..reference import int8 as _ref

_OK_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@cache
def _fns() -> dict[str, Any]:
    p, i64, i32, f32 = _native.c_ptr, _native.c_i64, _native.c_i32, _native.c_f32
    return {
        "row_quant": _native.function("bnb_int8_row_quant", [p, i32, i64, i64, i64, f32, p, p, p, i32]),
        "clear_columns": _native.function("bnb_int8_clear_columns", [p, i64, i64, p, i32]),
        "mm_dequant": _native.function("bnb_int8_mm_dequant", [p, i64, i64, p, p, p, i32, p, i32, i32]),
    }


def _threads(work: int) -> int:
    """OpenMP threads for ``work`` elements: one below ~64K (waking a team costs more than the
    work), the torch setting above."""
    return 1 if work < (1 << 16) else _native.num_threads()


def _rows(A: torch.Tensor) -> torch.Tensor:
    A2 = A.reshape(-1, A.shape[-1])
    if A2.shape[-1] > 1 and A2.stride(-1) != 1:
        A2 = A2.contiguous()
    if A2.shape[0] > 1 and A2.stride(0) < A2.shape[1]:
        A2 = A2.contiguous()
    return A2


@register("int8_vectorwise_quant", "cpu", "cpu", available=_native.available)
def int8_vectorwise_quant(A: torch.Tensor, threshold: float = 0.0):
    torch._check(A.dtype in _OK_DTYPES, lambda: f"A must be float16, bfloat16 or float32, got {A.dtype}")
    torch._check(threshold >= 0.0, lambda: f"threshold must be >= 0, got {threshold}")
    A2 = _rows(A)
    rows, K = A2.shape
    codes = torch.empty((rows, K), dtype=torch.int8)
    row_stats = torch.empty(rows, dtype=torch.float32)
    flags = torch.zeros(K, dtype=torch.uint8) if threshold > 0.0 else None
    lda = A2.stride(0) if rows > 1 else K
    code = _fns()["row_quant"](
        A2.data_ptr(),
        _native.DTYPE_CODES[A.dtype],
        rows,
        K,
        max(lda, K),
        float(threshold),
        codes.data_ptr(),
        row_stats.data_ptr(),
        _native.ptr(flags),
        _threads(rows * K),
    )
    _native.check(code, "int8_vectorwise_quant")
    outlier_cols = None
    if flags is not None:
        outlier_cols = torch.nonzero(flags).view(-1)
        if outlier_cols.numel():
            _native.check(
                _fns()["clear_columns"](codes.data_ptr(), rows, K, flags.data_ptr(), _threads(rows * K)),
                "int8_vectorwise_quant (clear columns)",
            )
    return codes.reshape(A.shape), row_stats, outlier_cols


def _int_mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    A2 = A.reshape(-1, A.shape[-1])
    # torch 2.4's CPU torch._int_mm returns zeros when the inner dimension is 1.
    if A2.shape[0] == 0 or A2.shape[1] <= 1 or B.shape[0] == 0:
        return _ref._int_matmul(A, B)
    out = torch._int_mm(A2.contiguous(), B.t())
    return out.reshape(*A.shape[:-1], B.shape[0])


@register("int8_linear_matmul", "cpu", "cpu", available=_native.available)
def int8_linear_matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return _int_mm(A, B)


@register("int8_linear_matmul.out", "cpu", "cpu", available=_native.available)
def int8_linear_matmul_out(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_int_mm(A, B))


@register("int8_mm_dequant", "cpu", "cpu", available=_native.available)
def int8_mm_dequant(
    A: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    dtype: torch.dtype | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    torch._check(A.dtype == torch.int32, lambda: f"A must be int32, got {A.dtype}")
    dtype = dtype or torch.float16
    A2 = A.reshape(-1, A.shape[-1]).contiguous()
    rows, cols = A2.shape
    row = row_stats.reshape(-1).float().contiguous()
    col = col_stats.reshape(-1).float().contiguous()
    torch._check(row.numel() == rows, lambda: f"row_stats needs {rows} values, got {row.numel()}")
    torch._check(col.numel() == cols, lambda: f"col_stats needs {cols} values, got {col.numel()}")
    if dtype not in _OK_DTYPES or (bias is not None and bias.dtype not in _OK_DTYPES):
        return _ref.int8_mm_dequant(A, row_stats, col_stats, dtype, bias)
    out = torch.empty((rows, cols), dtype=dtype)
    b = None
    if bias is not None:
        b = bias.reshape(-1).contiguous()
        torch._check(b.numel() == cols, lambda: f"bias needs {cols} values, got {b.numel()}")
    code = _fns()["mm_dequant"](
        A2.data_ptr(),
        rows,
        cols,
        row.data_ptr(),
        col.data_ptr(),
        _native.ptr(b),
        _native.DTYPE_CODES[b.dtype] if b is not None else 0,
        out.data_ptr(),
        _native.DTYPE_CODES[dtype],
        _threads(rows * cols),
    )
    _native.check(code, "int8_mm_dequant")
    return out.reshape(A.shape)
