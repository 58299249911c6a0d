"""Pure-torch reference of blockwise 8-bit and 4-bit quantization: the specification.

Rounding rules follow the reference release exactly: values are normalized by multiplying
with ``1 / absmax`` in float32; 8-bit codes come from the same 7-step binary search over the
sorted 256-entry codebook that the release's kernels run; NF4/FP4 codes from its decision
thresholds. Non-finite input: a block containing NaN gets absmax NaN and dequantizes to NaN;
a block of zeros dequantizes to zeros; other blocks are unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._registry import register
from ...codebooks import FP4_MAGNITUDE_ORDER, fourbit_table, fourbit_thresholds
from ...ops.quant import num_blocks


def _blocks(A: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 view of A as [blocks, blocksize] (zero padded) and its per-block absmax."""
    n = A.numel()
    blocks = num_blocks(n, blocksize)
    flat = A.reshape(-1).to(torch.float32)
    if blocks * blocksize != n:
        flat = torch.nn.functional.pad(flat, (0, blocks * blocksize - n))
    x = flat.view(blocks, blocksize)
    # amax ignores NaN on some torch versions; make NaN propagate explicitly.
    absmax = x.abs().amax(dim=1)
    absmax = torch.where(x.isnan().any(dim=1), torch.full_like(absmax, float("nan")), absmax)
    return x, absmax


def _normalize(x: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    return x * (1.0 / absmax).unsqueeze(1)


def search_codebook(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the code nearest to each x, as the reference release's binary search finds it."""
    code = code.to(device=x.device, dtype=torch.float32)
    pivot = torch.full_like(x, 127, dtype=torch.int64)
    upper_pivot = torch.full_like(pivot, 255)
    lower_pivot = torch.zeros_like(pivot)
    lower = torch.full_like(x, -1.0)
    upper = torch.full_like(x, 1.0)
    val = code[pivot]
    step = 64
    while step > 0:
        right = x > val
        lower_pivot = torch.where(right, pivot, lower_pivot)
        lower = torch.where(right, val, lower)
        upper_pivot = torch.where(right, upper_pivot, pivot)
        upper = torch.where(right, upper, val)
        pivot = torch.where(right, pivot + step, pivot - step)
        val = code[pivot]
        step //= 2
    upper = torch.where(upper_pivot == 255, code[255], upper)
    lower = torch.where(lower_pivot == 0, code[0], lower)
    right = x > val
    take_upper = right & (x > (upper + val) * 0.5)
    take_lower = ~right & (x < (lower + val) * 0.5)
    out = torch.where(take_upper, upper_pivot, torch.where(take_lower, lower_pivot, pivot))
    return out.to(torch.uint8)


@register("quantize_blockwise", "reference", "*")
def quantize_blockwise(A: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, absmax = _blocks(A, blocksize)
    codes = search_codebook(_normalize(x, absmax), code)
    return codes.reshape(-1)[: A.numel()].reshape(A.shape), absmax


def _dequantize_blockwise(A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    n = A.numel()
    values = code.to(torch.float32)[A.reshape(-1).long()]
    scale = absmax.to(torch.float32).repeat_interleave(blocksize)[:n]
    return values * scale


@register("dequantize_blockwise", "reference", "*")
def dequantize_blockwise(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype
) -> torch.Tensor:
    return _dequantize_blockwise(A, absmax, code, blocksize).to(dtype).reshape(A.shape)


@register("dequantize_blockwise.out", "reference", "*")
def dequantize_blockwise_out(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype, out: torch.Tensor
) -> None:
    out.copy_(_dequantize_blockwise(A, absmax, code, blocksize).reshape(out.shape))


def fourbit_codes(x: torch.Tensor, quant_type: str) -> torch.Tensor:
    """4-bit codes of normalized values x (in [-1, 1]) by the reference release's thresholds."""
    thresholds = fourbit_thresholds(quant_type, x.device)
    if quant_type == "nf4":
        # Number of thresholds strictly below x; NaN compares false everywhere -> code 0.
        return (x.unsqueeze(-1) > thresholds).sum(-1).to(torch.uint8)
    sign = torch.where(x < 0, 8, 0)
    rank = (x.abs().unsqueeze(-1) > thresholds).sum(-1)
    order = torch.tensor(FP4_MAGNITUDE_ORDER, device=x.device)
    return (order[rank] + sign).to(torch.uint8)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Two codes per byte, the first in the high nibble; odd length is padded with code 0."""
    codes = codes.reshape(-1)
    if codes.numel() % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    pairs = codes.view(-1, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_nibbles(packed: torch.Tensor, n: int) -> torch.Tensor:
    packed = packed.reshape(-1)
    return torch.stack((packed >> 4, packed & 0xF), dim=1).reshape(-1)[:n]


@register("quantize_4bit", "reference", "*")
def quantize_4bit(
    A: torch.Tensor, blocksize: int, quant_type: str, quant_storage: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    n = A.numel()
    x, absmax = _blocks(A, blocksize)
    codes = fourbit_codes(_normalize(x, absmax), quant_type).reshape(-1)[:n]
    packed = pack_nibbles(codes)
    return packed.view(quant_storage).unsqueeze(1), absmax


def _dequantize_4bit(
    A: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: Sequence[int]
) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    codes = unpack_nibbles(A.reshape(-1).view(torch.uint8), n)
    values = fourbit_table(quant_type, A.device)[codes.long()]
    scale = absmax.to(torch.float32).repeat_interleave(blocksize)[:n]
    return (values * scale).reshape(tuple(shape))


@register("dequantize_4bit", "reference", "*")
def dequantize_4bit(
    A: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    return _dequantize_4bit(A, absmax, blocksize, quant_type, shape).to(dtype)


@register("dequantize_4bit.out", "reference", "*")
def dequantize_4bit_out(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    out: torch.Tensor,
) -> None:
    out.copy_(_dequantize_4bit(A, absmax, blocksize, quant_type, shape))
