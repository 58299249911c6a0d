"""Pure-torch reference of the LLM.int8() ops: the specification (see ``ops/int8.py``).

Arithmetic follows the reference release bit for bit where it is defined: row scales
``127 * (1 / absmax)`` in float32 (two roundings), codes rounded half to even, the int32 product dequantized as
``float32(acc) * (row * col) * MM_DEQUANT (+ bias)`` and rounded once to the output dtype.
Where the release leaves behaviour to the hardware (a row of zeros, NaN), codes are 0.
"""

from __future__ import annotations

import torch

from ..._registry import register
from ...ops.int8 import INV_127, MM_DEQUANT


def row_quant(A: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Row-wise int8 codes of ``A`` (any shape, rows = leading dims) as the spec defines them."""
    K = A.shape[-1]
    x = A.reshape(-1, K).to(torch.float32)
    rows = x.shape[0]
    valid = ~torch.isnan(x)
    outlier = None
    if threshold > 0.0:
        outlier = x.abs() >= threshold
        valid &= ~outlier
    absx = torch.where(valid, x.abs(), torch.zeros_like(x))
    row_stats = absx.amax(dim=1) if K > 0 else x.new_zeros(rows)
    # The scale is 127 * (1 / absmax), two float32 roundings, as the release computes it.
    scaled = x * (row_stats.reciprocal() * 127.0).unsqueeze(1)
    keep = valid & torch.isfinite(scaled)
    codes = torch.where(keep, torch.round(scaled), torch.zeros_like(scaled)).to(torch.int8)
    outlier_cols = None
    if outlier is not None:
        outlier_cols = torch.nonzero(outlier.any(dim=0)).view(-1)
        codes[:, outlier_cols] = 0
    return codes.reshape(A.shape), row_stats, outlier_cols


@register("int8_vectorwise_quant", "reference", "*")
def int8_vectorwise_quant(A: torch.Tensor, threshold: float = 0.0):
    return row_quant(A, threshold)


@register("int8_vectorwise_dequant", "reference", "*")
def int8_vectorwise_dequant(A: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    A2 = A.reshape(-1, A.shape[-1])
    return (A2 * stats.reshape(-1, 1).to(torch.float32) * INV_127).reshape(A.shape)


@register("int8_double_quant", "reference", "*")
def int8_double_quant(A: torch.Tensor, threshold: float = 0.0):
    codes_row, row_stats, outlier_cols = row_quant(A, threshold)
    K = A.shape[-1]
    x = A.reshape(-1, K).to(torch.float32)
    valid = ~torch.isnan(x)
    if threshold > 0.0:
        valid &= ~(x.abs() >= threshold)
    xm = torch.where(valid, x, torch.zeros_like(x))
    col_stats = xm.abs().amax(dim=0)
    scaled = xm * 127.0 / col_stats.unsqueeze(0)
    codes_col = torch.where(torch.isfinite(scaled), torch.round(scaled), torch.zeros_like(scaled)).to(torch.int8)
    if outlier_cols is not None:
        codes_col[:, outlier_cols] = 0
    if outlier_cols is None:
        outlier_cols = torch.empty(0, dtype=torch.int64, device=A.device)
    return codes_row, codes_col.reshape(A.shape), row_stats, col_stats, outlier_cols


def _int_matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    # float64 holds every partial sum exactly (|sum| < 2^53), on every device.
    A2 = A.reshape(-1, A.shape[-1])
    out = (A2.to(torch.float64) @ B.to(torch.float64).t()).to(torch.int32)
    return out.reshape(*A.shape[:-1], B.shape[0])


@register("int8_linear_matmul", "reference", "*")
def int8_linear_matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return _int_matmul(A, B)


@register("int8_linear_matmul.out", "reference", "*")
def int8_linear_matmul_out(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_int_matmul(A, B))


@register("int8_mm_dequant", "reference", "*")
def int8_mm_dequant(
    A: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    dtype: torch.dtype | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    acc = A.reshape(-1, A.shape[-1])
    out = acc * (row_stats.reshape(-1, 1).float() * col_stats.reshape(1, -1).float()) * MM_DEQUANT
    if bias is not None:
        out = out + bias.float()
    return out.to(dtype or torch.float16).reshape(A.shape)


@register("int8_scaled_mm", "reference", "*")
def int8_scaled_mm(
    A: torch.Tensor,
    B: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    bias: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    acc = torch.ops.bitsandbytes.int8_linear_matmul.default(A, B)
    return torch.ops.bitsandbytes.int8_mm_dequant.default(acc, row_stats, col_stats, dtype or torch.float16, bias)


def outlier_product(
    A: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, outlier_cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A[:, cols]`` and the dequantized weight columns ``(CB[:, cols] * SCB / 127).T`` in A's dtype."""
    A2 = A.reshape(-1, A.shape[-1])
    subA = A2[:, outlier_cols]
    subB = (CB[:, outlier_cols].to(torch.float32) * SCB.reshape(-1, 1).float() * INV_127).to(A.dtype).t()
    return subA, subB


@register("int8_mixed_scaled_mm", "reference", "*")
def int8_mixed_scaled_mm(
    A: torch.Tensor,
    CA: torch.Tensor,
    CB: torch.Tensor,
    SCA: torch.Tensor,
    SCB: torch.Tensor,
    outlier_cols: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    out = torch.ops.bitsandbytes.int8_scaled_mm.default(CA, CB, SCA, SCB, bias, A.dtype)
    if outlier_cols is None or outlier_cols.numel() == 0:
        return out, A.new_empty((out.reshape(-1, out.shape[-1]).shape[0], 0))
    subA, subB = outlier_product(A, CB, SCB, outlier_cols)
    out2 = out.reshape(-1, out.shape[-1]).addmm(subA, subB)
    return out2.reshape(out.shape), subA


@register("int8_linear_fused", "reference", "*")
def int8_linear_fused(
    A: torch.Tensor,
    CB: torch.Tensor,
    SCB: torch.Tensor,
    bias: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> torch.Tensor:
    torch._check(CB.dtype == torch.int8 and CB.dim() == 2, lambda: f"CB must be 2-d int8, got {CB.dtype}")
    torch._check(A.shape[-1] == CB.shape[-1], lambda: f"A {tuple(A.shape)} does not match CB {tuple(CB.shape)}")
    torch._check(SCB.numel() == CB.shape[0], lambda: f"SCB needs {CB.shape[0]} values, got {SCB.numel()}")
    torch._check(threshold >= 0.0, lambda: f"threshold must be >= 0, got {threshold}")
    CA, SCA, outlier_cols = torch.ops.bitsandbytes.int8_vectorwise_quant.default(A, threshold)
    if threshold > 0.0:
        out, _ = torch.ops.bitsandbytes.int8_mixed_scaled_mm.default(A, CA, CB, SCA, SCB, outlier_cols, bias)
        return out
    return torch.ops.bitsandbytes.int8_scaled_mm.default(CA, CB, SCA, SCB, bias, A.dtype)
