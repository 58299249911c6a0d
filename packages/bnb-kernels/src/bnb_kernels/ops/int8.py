"""Schemas and fake kernels of the LLM.int8() ops (row-wise int8 quantization, int8 matmul,
dequantization of its int32 result, and the mixed int8 + fp16-outlier matmul).

Names and schemas are those of the reference release. ``int8_linear_fused`` is this
project's own addition: the whole inference forward of an int8 linear layer in one op, so a
backend can fuse it (and skip host synchronization) without changing the module code. Its
reference is quantize + ``int8_scaled_mm`` / ``int8_mixed_scaled_mm``; a backend may instead
multiply the 16-bit activations with the int8 weight dequantized in registers (weight-only,
more exact) where that is faster (the Triton backend does for up to 1024 rows when measured
faster on the device).

Conventions shared by every backend:

- ``int8_vectorwise_quant``: per row (all leading dims flattened) the absmax of the values
  with ``|x| < threshold`` (all values when ``threshold == 0``; NaN never counts), codes
  ``rint(x * (127 * (1 / absmax)))`` in float32 with ties to even. Elements with
  ``|x| >= threshold`` get code 0, and with ``threshold > 0`` so does every element of a
  column that holds such an outlier (when there is more than one row). A row whose absmax is
  0 (or a NaN element) gets code 0. ``outlier_cols`` are the sorted int64 column indices.
- ``int8_mm_dequant``: ``float32(A) * (row_stats[:, None] * col_stats[None, :]) * MM_DEQUANT``
  (+ ``bias``), rounded once to ``dtype`` (float16 by default).
- ``int8_vectorwise_dequant``: ``A * stats[:, None] * (1 / 127)`` in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import torch

from .._registry import _select, define_op

# 1 / (127 * 127) as the reference release writes it.
MM_DEQUANT = 6.200124e-05
INV_127 = 7.874015718698502e-3
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

define_op("int8_vectorwise_quant", "(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor?)")
define_op("int8_vectorwise_dequant", "(Tensor A, Tensor stats) -> Tensor")
define_op("int8_double_quant", "(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor, Tensor, Tensor?)")
define_op("int8_linear_matmul", "(Tensor A, Tensor B) -> Tensor")
define_op("int8_linear_matmul.out", "(Tensor A, Tensor B, Tensor! out) -> ()")
define_op(
    "int8_mm_dequant",
    "(Tensor A, Tensor row_stats, Tensor col_stats, ScalarType? dtype=None, Tensor? bias=None) -> Tensor",
)
define_op(
    "int8_scaled_mm",
    "(Tensor A, Tensor B, Tensor row_stats, Tensor col_stats, Tensor? bias=None, ScalarType? dtype=None) -> Tensor",
)
define_op(
    "int8_mixed_scaled_mm",
    "(Tensor A, Tensor CA, Tensor CB, Tensor SCA, Tensor SCB, Tensor? outlier_cols=None, Tensor? bias=None)"
    " -> (Tensor, Tensor?)",
)
define_op(
    "int8_linear_fused",
    "(Tensor A, Tensor CB, Tensor SCB, Tensor? bias=None, float threshold=0.0) -> Tensor",
)


def prepare_int8_linear(CB: torch.Tensor, SCB: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Bind an int8 weight once; returns ``run(A, bias=None, threshold=0.0)`` equal to
    ``int8_linear_fused(A, CB, SCB, bias, threshold)``.

    The backend selected for ``CB``'s device may keep launch state per input shape in it (the
    Triton backend does), so a module that caches the callable pays only for the launches.
    """
    impl = _select("int8_linear_fused", CB.device.type)
    prepare = getattr(impl.fn, "prepare", None)
    if prepare is not None:
        return prepare(CB, SCB)
    fn = impl.fn

    def run(A: torch.Tensor, bias: torch.Tensor | None = None, threshold: float = 0.0) -> torch.Tensor:
        return fn(A, CB, SCB, bias, threshold)

    return run


def rows_of(A: torch.Tensor) -> int:
    return prod(A.shape[:-1])


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant")
def _(A: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float16, bfloat16 or float32, got {A.dtype}")
    torch._check(threshold >= 0.0, lambda: f"threshold must be >= 0, got {threshold}")
    codes = torch.empty(A.shape, device=A.device, dtype=torch.int8)
    row_stats = torch.empty(rows_of(A), device=A.device, dtype=torch.float32)
    if threshold == 0.0:
        return codes, row_stats, None
    n = torch.library.get_ctx().new_dynamic_size()
    return codes, row_stats, A.new_empty(n, dtype=torch.int64)


@torch.library.register_fake("bitsandbytes::int8_vectorwise_dequant")
def _(A: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    torch._check(A.dtype == torch.int8, lambda: f"A must be int8, got {A.dtype}")
    return torch.empty_like(A, dtype=torch.float32)


@torch.library.register_fake("bitsandbytes::int8_double_quant")
def _(
    A: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float16, bfloat16 or float32, got {A.dtype}")
    out_row = torch.empty_like(A, dtype=torch.int8)
    out_col = torch.empty_like(A, dtype=torch.int8)
    row_stats = torch.empty(rows_of(A), device=A.device, dtype=torch.float32)
    col_stats = torch.empty(A.shape[-1], device=A.device, dtype=torch.float32)
    n = torch.library.get_ctx().new_dynamic_size()
    return out_row, out_col, row_stats, col_stats, A.new_empty(n, dtype=torch.int64)


def _matmul_shape(A: torch.Tensor, B: torch.Tensor) -> tuple[int, ...]:
    torch._check(A.dtype == torch.int8, lambda: f"A must be int8, got {A.dtype}")
    torch._check(B.dtype == torch.int8, lambda: f"B must be int8, got {B.dtype}")
    torch._check(B.dim() == 2, lambda: f"B must be 2-d [N, K], got shape {tuple(B.shape)}")
    torch._check(
        A.shape[-1] == B.shape[-1],
        lambda: f"inner dimensions differ: A {tuple(A.shape)} @ B.T with B {tuple(B.shape)}",
    )
    return (*A.shape[:-1], B.shape[0])


@torch.library.register_fake("bitsandbytes::int8_linear_matmul")
def _(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return torch.empty(_matmul_shape(A, B), device=A.device, dtype=torch.int32)


@torch.library.register_fake("bitsandbytes::int8_linear_matmul.out")
def _(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor) -> None:
    shape = _matmul_shape(A, B)
    torch._check(tuple(out.shape) == shape, lambda: f"Expected out.shape == {shape}, got {tuple(out.shape)}")
    torch._check(out.dtype == torch.int32, lambda: f"Expected out.dtype == int32, got {out.dtype}")


@torch.library.register_fake("bitsandbytes::int8_mm_dequant")
def _(
    A: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    dtype: torch.dtype | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    torch._check(A.dtype == torch.int32, lambda: f"A must be int32, got {A.dtype}")
    return torch.empty_like(A, dtype=dtype or torch.float16)


@torch.library.register_fake("bitsandbytes::int8_scaled_mm")
def _(
    A: torch.Tensor,
    B: torch.Tensor,
    row_stats: torch.Tensor,
    col_stats: torch.Tensor,
    bias: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    return torch.empty(_matmul_shape(A, B), device=A.device, dtype=dtype or torch.float16)


@torch.library.register_fake("bitsandbytes::int8_mixed_scaled_mm")
def _(
    A: torch.Tensor,
    CA: torch.Tensor,
    CB: torch.Tensor,
    SCA: torch.Tensor,
    SCB: torch.Tensor,
    outlier_cols: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    out = torch.empty(_matmul_shape(CA, CB), device=A.device, dtype=A.dtype)
    n = torch.library.get_ctx().new_dynamic_size()
    return out, A.new_empty((rows_of(A), n), dtype=A.dtype)


@torch.library.register_fake("bitsandbytes::int8_linear_fused")
def _(
    A: torch.Tensor,
    CB: torch.Tensor,
    SCB: torch.Tensor,
    bias: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> torch.Tensor:
    torch._check(CB.dtype == torch.int8, lambda: f"CB must be int8, got {CB.dtype}")
    torch._check(A.shape[-1] == CB.shape[-1], lambda: f"A {tuple(A.shape)} does not match CB {tuple(CB.shape)}")
    return A.new_empty((*A.shape[:-1], CB.shape[0]))
