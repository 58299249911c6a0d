"""Pure-torch reference of blockwise 8-bit and 4-bit quantization: the specification.

Every other backend must give the same bytes. The rule below reproduces, bit for bit, every
``blockwise8_*`` and ``quant4_*`` fixture written by the reference release (codes, absmax and
dequantized values); its CUDA decision trees do not (they differ near ties and, for FP4, in
the zero bucket).

Quantizing, per block of ``blocksize`` consecutive elements of the flattened input (the last
block may be shorter):

1. ``absmax = max |x|`` in float32 (NaN if the block holds a NaN).
2. ``s = x * (1 / absmax)``, both operations in float32 (so ``1 / absmax`` is rounded first).
3. 4-bit (NF4/FP4): with ``(m, order) = codebooks.fourbit_search_table(quant_type)`` (the
   15 float32 midpoints of the stably sorted 16 values, and the codes in value order),
   ``code = order[#{j : s > m_j}]``, strictly greater. So a value exactly on a midpoint takes
   the lower value, and FP4's two zeros (code 0 before code 8 in value order, midpoint 0)
   give code 0 for ``s <= 0`` (including -0.0) and code 8 for tiny ``s > 0``.
4. 8-bit (any sorted-or-not codebook of up to 256 values): with
   ``(T, order) = codebooks.codebook_search_table(code)``, ``code = order[#{j : s >= T_j}]``.
   ``T`` folds in a 16-bit grid: the release first rounds ``s`` to
   ``G = round((s + 1) * 32767.5)`` (exact arithmetic, clamped to 0..65535; the only exact
   tie, ``s = ±0``, gives 32768; equivalently ``G = floor(s * 32767.5) + 32768`` with the
   product exact in float64) and then takes the code nearest to ``G / 32767.5 - 1``
   (ties to the upper of two sorted neighbours). ``T_j`` is the smallest float32 ``s`` whose
   grid point lies above the midpoint between sorted values ``j`` and ``j + 1`` (``-inf``
   or ``+inf`` when every or no grid point does). Consequence for the dynamic map: values in
   ``[-1/32767.5, 0)`` take code 123 and ``[0, 1/32767.5)`` take code 131; the codes nearer
   zero are never produced.
5. NaN ``s`` compares false everywhere and takes ``order[0]`` (the most negative value): NF4
   code 0, FP4 code 11, dynamic-map code 0. A block of zeros has ``s = 0 * inf = NaN``, so it
   gets ``order[0]`` codes and absmax 0, and dequantizes to (signed) zeros. A denormal
   absmax makes ``1 / absmax`` infinite, so its block's non-zero values take the extreme
   codes (``s = ±inf``).

Packing (4-bit): two codes per byte, the first element in the high nibble; an odd count is
padded with code 0. Dequantizing: ``float32(table[code] * absmax)`` rounded once to the
output dtype (nearest even). Non-finite input: a block containing NaN gets absmax NaN and
dequantizes to NaN; a block with ±Inf (and no NaN) gets absmax Inf and dequantizes to
non-finite values; other blocks are unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._registry import register
from ...codebooks import codebook_search_table, fourbit_search_table, fourbit_table
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
    """8-bit code of each normalized float32 value x (rule 4 of the module docstring)."""
    thresholds, order = codebook_search_table(code)
    thresholds = thresholds.to(x.device)
    index = torch.searchsorted(thresholds, x.contiguous(), right=True)  # #{j : T_j <= x}
    index = torch.where(x.isnan(), 0, index)
    return order.to(x.device)[index].to(torch.uint8)


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
    """4-bit code of each normalized float32 value x (rule 3 of the module docstring)."""
    mids, order = fourbit_search_table(quant_type, x.device)
    index = torch.searchsorted(mids, x.contiguous(), right=False)  # #{j : m_j < x}
    index = torch.where(x.isnan(), 0, index)
    return order[index].to(torch.uint8)


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
