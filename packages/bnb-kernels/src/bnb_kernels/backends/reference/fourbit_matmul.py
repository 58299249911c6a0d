"""Pure-torch reference of the 4-bit matmul ops: the specification.

The weight is dequantized to the activation dtype exactly as ``dequantize_4bit`` does
(code value times float32 absmax, rounded once to ``A.dtype``) and multiplied with
``torch.nn.functional.linear``. Every faster backend is tested against these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._registry import register
from ...codebooks import fourbit_table
from ...ops.fourbit_matmul import NESTED_BLOCKSIZE, check_gemm_4bit_args
from .quant import unpack_nibbles

__all__ = ["decode_nested_absmax", "dequantize_weight", "gemm_4bit", "gemv_4bit", "gemv_4bit_out"]


def decode_nested_absmax(
    absmax_8bit: torch.Tensor, absmax: torch.Tensor, absmax_code: torch.Tensor, absmax_offset: torch.Tensor | float
) -> torch.Tensor:
    """float32 per-block scales from the nested form (8-bit codes of groups of 256)."""
    n = absmax_8bit.numel()
    values = absmax_code.to(torch.float32)[absmax_8bit.reshape(-1).long()]
    scale = absmax.to(torch.float32).repeat_interleave(NESTED_BLOCKSIZE)[:n]
    return values * scale + torch.as_tensor(absmax_offset, dtype=torch.float32, device=values.device)


def dequantize_weight(
    B: torch.Tensor, shapeB: Sequence[int], absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype
) -> torch.Tensor:
    """The [N, K] weight in ``dtype``: ``code[nibble] * absmax[block]`` rounded once."""
    n = int(shapeB[0]) * int(shapeB[1])
    codes = unpack_nibbles(B.reshape(-1).view(torch.uint8), n)
    values = code.to(device=B.device, dtype=torch.float32)[codes.long()]
    scale = absmax.to(torch.float32).reshape(-1).repeat_interleave(blocksize)[:n]
    return (values * scale).to(dtype).reshape(int(shapeB[0]), int(shapeB[1]))


@register("gemv_4bit", "reference", "*")
def gemv_4bit(
    A: torch.Tensor, B: torch.Tensor, shapeB: Sequence[int], absmax: torch.Tensor, code: torch.Tensor, blocksize: int
) -> torch.Tensor:
    check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, code=code)
    W = dequantize_weight(B, shapeB, absmax, code, blocksize, A.dtype)
    return torch.nn.functional.linear(A, W)


@register("gemv_4bit.out", "reference", "*")
def gemv_4bit_out(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    out: torch.Tensor,
) -> None:
    out.copy_(gemv_4bit(A, B, shapeB, absmax, code, blocksize))


@register("gemm_4bit", "reference", "*")
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
    check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code)
    if absmax_8bit is not None:
        if absmax_code is None or absmax_offset is None:
            raise ValueError("nested absmax needs absmax_8bit, absmax_code and absmax_offset together")
        absmax = decode_nested_absmax(absmax_8bit, absmax, absmax_code, absmax_offset)
    code = fourbit_table(quant_type, A.device)
    W = dequantize_weight(B, shapeB, absmax, code, blocksize, A.dtype)
    return torch.nn.functional.linear(A, W, None if bias is None else bias.to(A.dtype))
