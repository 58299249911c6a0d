"""LLM.int8() functional API: row-wise int8 quantization with outlier columns, the int8
matmul and the dequantization of its int32 result, as ``bitsandbytes.functional`` has them.

Every function checks its input and raises TypeError/ValueError naming what it expected;
the work runs in the ``torch.ops.bitsandbytes`` ops (native CPU, Triton on CUDA, or the
pure-torch reference).
"""

from __future__ import annotations

import warnings

import torch

from . import _checks

__all__ = [
    "get_colrow_absmax",
    "get_row_absmax",
    "int8_double_quant",
    "int8_linear_matmul",
    "int8_mm_dequant",
    "int8_vectorwise_dequant",
    "int8_vectorwise_quant",
    "mm_dequant",
]


def _threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    value = float(threshold)
    if not value >= 0.0:
        raise ValueError(f"threshold must be >= 0 (0 disables outlier columns), got {threshold}")
    return value


def _float_input(name: str, A: object) -> torch.Tensor:
    _checks.tensor(name, A, _checks.FLOAT_DTYPES)
    assert isinstance(A, torch.Tensor)
    if A.dim() < 1:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    return A


def _stats(name: str, stats: object, n: int, device: torch.device) -> torch.Tensor:
    _checks.tensor(name, stats, (torch.float32, torch.float16, torch.bfloat16))
    assert isinstance(stats, torch.Tensor)
    _checks.numel(name, stats, n)
    if stats.device != device:
        raise ValueError(f"{name} must be on {device} like the data, got {stats.device}")
    return stats


def int8_vectorwise_quant(
    A: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize ``A`` row-wise (rows = all leading dims) to int8 (LLM.int8()).

    Returns ``(codes, row_stats, outlier_cols)``: int8 codes of A's shape, the float32 absmax
    of each row (outliers excluded) and, when ``threshold > 0``, the int64 indices of the
    columns holding a value with ``|x| >= threshold`` (their codes are 0); else None.
    """
    A = _float_input("A", A)
    t = _threshold(threshold)
    return torch.ops.bitsandbytes.int8_vectorwise_quant.default(A, t)


def int8_vectorwise_dequant(A: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`int8_vectorwise_quant`: ``A * stats[:, None] / 127`` in float32."""
    _checks.tensor("A", A, (torch.int8,))
    if A.dim() < 1:
        raise ValueError("A must have at least one dimension, got a scalar")
    rows = A.numel() // max(A.shape[-1], 1) if A.shape[-1] else 0
    _stats("stats", stats, rows, A.device)
    return torch.ops.bitsandbytes.int8_vectorwise_dequant.default(A, stats)


def int8_double_quant(
    A: torch.Tensor,
    col_stats: torch.Tensor | None = None,
    row_stats: torch.Tensor | None = None,
    out_col: torch.Tensor | None = None,
    out_row: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Row-wise and column-wise int8 quantization of a 2-d (or flattened) ``A``.

    Returns ``(codes_row, codes_col, row_stats, col_stats, outlier_cols)``. Pre-allocated
    outputs are not supported (as in the reference release).
    """
    for name, value in (("col_stats", col_stats), ("row_stats", row_stats), ("out_col", out_col), ("out_row", out_row)):
        if value is not None:
            raise ValueError(f"{name} must be None: int8_double_quant does not take a pre-allocated {name}")
    A = _float_input("A", A)
    t = _threshold(threshold)
    return torch.ops.bitsandbytes.int8_double_quant.default(A, t)


def int8_linear_matmul(
    A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None, dtype: torch.dtype = torch.int32
) -> torch.Tensor:
    """``A @ B.T`` for int8 ``A [..., K]`` and ``B [N, K]``, exact, in int32."""
    _checks.tensor("A", A, (torch.int8,))
    _checks.tensor("B", B, (torch.int8,))
    if dtype != torch.int32:
        raise TypeError(f"dtype must be torch.int32 (the only accumulator type), got {dtype}")
    if B.dim() != 2:
        raise ValueError(f"B must be 2-d [N, K], got shape {tuple(B.shape)}")
    if A.dim() < 1 or A.shape[-1] != B.shape[1]:
        raise ValueError(f"inner dimensions differ: A {tuple(A.shape)} and B {tuple(B.shape)} (computing A @ B.T)")
    _checks.same_device(A=A, B=B, out=out)
    if out is not None:
        _checks.tensor("out", out, (torch.int32,))
        expected = (*A.shape[:-1], B.shape[0])
        if tuple(out.shape) != expected:
            raise ValueError(f"out must have shape {expected}, got {tuple(out.shape)}")
        torch.ops.bitsandbytes.int8_linear_matmul.out(A, B, out)
        return out
    return torch.ops.bitsandbytes.int8_linear_matmul.default(A, B)


def int8_mm_dequant(
    A: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    out: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dequantize the int32 result of an int8 matmul to float16 (+ ``bias``)."""
    _checks.tensor("A", A, (torch.int32,))
    if A.dim() < 1:
        raise ValueError("A must have at least one dimension, got a scalar")
    cols = A.shape[-1]
    rows = A.numel() // cols if cols else 0
    _stats("row_stats", row_stats, rows, A.device)
    _stats("col_stats", col_stats, cols, A.device)
    if bias is not None:
        _checks.tensor("bias", bias, _checks.FLOAT_DTYPES)
        _checks.numel("bias", bias, cols)
        _checks.same_device(A=A, bias=bias)
    result = torch.ops.bitsandbytes.int8_mm_dequant.default(
        A, row_stats.float(), col_stats.float(), torch.float16, bias
    )
    if out is not None:
        _checks.tensor("out", out, _checks.FLOAT_DTYPES)
        _checks.numel("out", out, result.numel())
        return out.copy_(result.view_as(out))
    return result


def mm_dequant(
    A: torch.Tensor,
    quant_state: object,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    out: torch.Tensor | None = None,
    new_row_stats: torch.Tensor | None = None,
    new_col_stats: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deprecated name of :func:`int8_mm_dequant` (``quant_state`` and ``new_*`` are unused)."""
    warnings.warn("mm_dequant is deprecated; use int8_mm_dequant", FutureWarning, stacklevel=2)
    return int8_mm_dequant(A, row_stats, col_stats, out, bias)


def get_row_absmax(A: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Float32 absmax of each row of ``A``, values with ``|x| >= threshold`` left out."""
    return int8_vectorwise_quant(A, threshold)[1]


def get_colrow_absmax(
    A: torch.Tensor,
    row_stats: torch.Tensor | None = None,
    col_stats: torch.Tensor | None = None,
    nnz_block_ptr: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Row and column absmax of ``A`` (outliers left out) and the outlier mask (or None)."""
    A = _float_input("A", A)
    t = _threshold(threshold)
    x = A.reshape(-1, A.shape[-1]).abs().float()
    mask = None
    if t > 0.0:
        mask = x >= t
        x = x.masked_fill(mask, 0.0)
    if row_stats is None:
        row_stats = get_row_absmax(A, t)
    if col_stats is None:
        col_stats = x.amax(dim=0)
    return row_stats, col_stats, mask
