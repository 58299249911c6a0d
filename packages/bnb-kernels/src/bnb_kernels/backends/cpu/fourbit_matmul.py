"""Native C++ 4-bit matmul on the CPU (csrc/gemv_4bit.cpp): AVX-512 (BF16 dot products where
the CPU has them) or AVX2, OpenMP threads. The weight is decoded a few rows at a time and
never materialized whole."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ... import _native
from ..._registry import register
from ...codebooks import fourbit_table
from ...ops.fourbit_matmul import NESTED_BLOCKSIZE, check_gemm_4bit_args

__all__ = ["PATHS", "gemm_4bit", "gemv_4bit", "gemv_4bit_out"]

# Forced kernel choice for tests: 0 automatic, 1 scalar, 2 AVX2/baseline, 3 AVX-512.
PATHS = {"auto": 0, "scalar": 1, "avx2": 2, "avx512": 3}

_fn = None
_LUTS: dict[str, torch.Tensor] = {}


def _bind():
    global _fn
    if _fn is None:
        p, i64, i32, f32 = _native.c_ptr, _native.c_i64, _native.c_i32, _native.c_f32
        _fn = _native.function(
            "bnb_gemm_4bit",
            [p, i32, i64, i64, i64, p, i64, p, p, p, f32, i64, p, i64, p, p, i64, i32, i32],
        )
    return _fn


def _lut(quant_type: str) -> torch.Tensor:
    t = _LUTS.get(quant_type)
    if t is None:
        t = _LUTS[quant_type] = fourbit_table(quant_type, "cpu")
    return t


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


def run(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    lut: torch.Tensor,
    blocksize: int,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | float | None = None,
    out: torch.Tensor | None = None,
    path: str = "auto",
) -> torch.Tensor:
    """``A @ dequantize(B).T (+ bias)`` with the native kernel; returns ``[*A.shape[:-1], N]``."""
    N, K = check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, None, bias, absmax_8bit, absmax_code, lut)
    x = A.reshape(-1, K)
    if x.stride(-1) != 1 or (x.shape[0] > 1 and x.stride(0) < K):
        x = x.contiguous()
    M = x.shape[0]
    o = torch.empty((M, N), dtype=A.dtype) if out is None else out.view(M, N)
    w = B.reshape(-1).view(torch.uint8) if B.dtype != torch.uint8 else B.reshape(-1)
    w = w.contiguous()
    if bias is not None:
        bias = bias.to(A.dtype).contiguous()
    absmax = _f32(absmax)
    lut = _f32(lut)
    if absmax_8bit is not None:
        a8 = absmax_8bit.reshape(-1).contiguous()
        code2 = _f32(absmax_code)
        offset = float(absmax_offset)
    else:
        a8 = code2 = None
        offset = 0.0
    code = _bind()(
        x.data_ptr(), _native.DTYPE_CODES[A.dtype], M, K, x.stride(0) if M > 1 else K,
        w.data_ptr(), N, absmax.data_ptr(), _native.ptr(a8), _native.ptr(code2), offset, NESTED_BLOCKSIZE,
        lut.data_ptr(), blocksize, _native.ptr(bias), o.data_ptr(), o.stride(0) if M > 1 else N,
        _native.num_threads(), PATHS[path],
    )  # fmt: skip
    _native.check(code, "gemm_4bit")
    return o.view(*A.shape[:-1], N) if out is None else out


@register("gemm_4bit", "cpu", "cpu", available=_native.available)
def gemm_4bit(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    return run(A, B, shapeB, absmax, _lut(quant_type), blocksize, bias, absmax_8bit, absmax_code, absmax_offset)


@register("gemv_4bit", "cpu", "cpu", available=_native.available)
def gemv_4bit(
    A: torch.Tensor, B: torch.Tensor, shapeB: Sequence[int], absmax: torch.Tensor, code: torch.Tensor, blocksize: int
) -> torch.Tensor:
    return run(A, B, shapeB, absmax, code, blocksize)


@register("gemv_4bit.out", "cpu", "cpu", available=_native.available)
def gemv_4bit_out(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    out: torch.Tensor,
) -> None:
    if out.is_contiguous():
        run(A, B, shapeB, absmax, code, blocksize, out=out)
    else:
        out.copy_(run(A, B, shapeB, absmax, code, blocksize))
