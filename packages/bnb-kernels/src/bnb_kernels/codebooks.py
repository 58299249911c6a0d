"""The fixed 4-bit codebooks and the search tables that define how values get their codes.

Code ``i`` of a codebook dequantizes to ``TABLE[i] * absmax``. Quantizing a normalized value
``s`` (float32, ``x * (1 / absmax)``) is a count over a sorted threshold table, the rule that
reproduces every code written by the reference release (see ``backends/reference/quant.py``):

- 4-bit (``fourbit_search_table``): sort the 16 values stably (equal values keep code order),
  ``m_j = float32(float32(v_j + v_(j+1)) * 0.5)`` for the 15 neighbours, and
  ``code = order[#{j : s > m_j}]`` (strictly greater).
- 8-bit (``codebook_search_table``): the value is first rounded to a 16-bit grid,
  ``G(s) = round((s + 1) * 32767.5)`` (exact arithmetic; the one exact tie, ``s = ±0``, goes
  up to 32768; clamped to 0..65535), and the grid point ``g = G / 32767.5 - 1`` takes the
  code whose value is nearest (above the midpoint of two sorted neighbours -> the upper).
  That is folded into float32 thresholds ``T_j`` with ``code = order[#{j : s >= T_j}]``.

In both, NaN compares false everywhere and takes ``order[0]`` (the most negative value).
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from fractions import Fraction

import torch

__all__ = [
    "FP4_VALUES",
    "GRID_HALF_STEPS",
    "NF4_VALUES",
    "CodebookTable",
    "codebook_search_table",
    "codebook_table",
    "fourbit_search_table",
    "fourbit_table",
    "fourbit_thresholds",
]

# NormalFloat4 (QLoRA): quantiles of N(0, 1) scaled to [-1, 1], with an exact zero.
NF4_VALUES = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

# FP4 (e2m1 without inf/nan, bias chosen by the reference release), scaled by 1/12.
# Bit 3 is the sign; codes 0 and 8 both hold zero.
_FP4_MAGNITUDES = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0)
# The reference release stores code 8 as +0.0 (not -0.0); keep its bytes.
FP4_VALUES = tuple(m / 12.0 for m in _FP4_MAGNITUDES) + tuple(-m / 12.0 if m else 0.0 for m in _FP4_MAGNITUDES)

# Legacy: the decision tree of the reference release's CUDA kernel (sign bit from x < 0, then
# magnitude thresholds). It is NOT the rule its fixtures follow near ties and in the zero
# bucket; the specification is ``fourbit_search_table``. Kept for callers that still import it.
FP4_MAGNITUDE_ORDER = (0, 1, 6, 7, 4, 5, 2, 3)
FP4_THRESHOLDS = (0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333)

# Half the number of steps of the 16-bit grid of the 8-bit rule: G = round((s + 1) * 32767.5).
GRID_HALF_STEPS = 32767.5
_GRID_MAX = 65535


def fourbit_table(quant_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 float32 values of ``quant_type`` ("nf4" or "fp4"), indexed by code."""
    return torch.tensor(_fourbit_values(quant_type), dtype=torch.float32, device=device)


def _fourbit_values(quant_type: str) -> tuple[float, ...]:
    if quant_type == "nf4":
        return NF4_VALUES
    if quant_type == "fp4":
        return FP4_VALUES
    raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")


_FOURBIT_TABLES: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def fourbit_search_table(quant_type: str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(thresholds, order)`` of the 4-bit rule: float32[15] midpoints of the stably sorted
    values and int64[16] codes in value order; ``code = order[#{j : s > thresholds[j]}]``."""
    table = _FOURBIT_TABLES.get(quant_type)
    if table is None:
        values = torch.tensor(_fourbit_values(quant_type), dtype=torch.float32)
        sorted_values, order = torch.sort(values, stable=True)
        mids = (sorted_values[1:] + sorted_values[:-1]) * 0.5
        table = _FOURBIT_TABLES[quant_type] = (mids, order)
    mids, order = table
    return mids.to(device), order.to(device)


def fourbit_thresholds(quant_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Legacy thresholds: NF4's sorted midpoints (the spec) or FP4's CUDA magnitude tree."""
    if quant_type == "nf4":
        return fourbit_search_table("nf4", device)[0]
    _fourbit_values(quant_type)
    return torch.tensor(FP4_THRESHOLDS, dtype=torch.float32, device=device)


def _to_float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _next_float32_up(x: float) -> float:
    if x == 0.0:
        return struct.unpack("<f", struct.pack("<I", 1))[0]
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = bits + 1 if x > 0 else bits - 1
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _smallest_float32_at_least(r: Fraction) -> float:
    t = _to_float32(float(r))
    if Fraction(t) < r:
        t = _next_float32_up(t)
    return t


def _grid_boundaries(sorted_values: list[float]) -> tuple[list[int], list[float]]:
    """For each pair of sorted neighbours: the first grid index G whose point lies above their
    midpoint, and the smallest float32 s with G(s) >= that index."""
    firsts: list[int] = []
    thresholds: list[float] = []
    for j in range(len(sorted_values) - 1):
        mid = (Fraction(sorted_values[j]) + Fraction(sorted_values[j + 1])) / 2
        # First grid index whose point (2i - 65535) / 65535 lies above the midpoint.
        q = (mid + 1) * _GRID_MAX / 2
        first = q.numerator // q.denominator + 1
        firsts.append(first)
        if first <= 0:
            thresholds.append(-math.inf)
        elif first > _GRID_MAX:
            thresholds.append(math.inf)
        else:
            # G(s) >= first  <=>  s >= (2 * first - 1) / 65535 - 1
            thresholds.append(_smallest_float32_at_least(Fraction(2 * first - 1, _GRID_MAX) - 1))
    return firsts, thresholds


class CodebookTable:
    """Search tables of one 8-bit codebook (CPU tensors).

    ``thresholds`` float32[len - 1] and ``order`` int64[len]: ``code = order[#{j : s >= T_j}]``.
    ``grid_lut`` uint8[65540]: the code of each grid index ``G`` (0..65535), at index 65536
    the code of NaN (``order[0]``), then 3 bytes of padding (so 4-byte gathers at any index
    stay inside), for kernels that compute ``G`` exactly.
    """

    __slots__ = ("grid_lut", "order", "thresholds")

    def __init__(self, values: torch.Tensor) -> None:
        sorted_values, order = torch.sort(values, stable=True)
        firsts, thresholds = _grid_boundaries(sorted_values.tolist())
        self.thresholds = torch.tensor(thresholds, dtype=torch.float32)
        self.order = order
        grid = torch.arange(_GRID_MAX + 1, dtype=torch.int64)
        rank = torch.searchsorted(torch.tensor(firsts, dtype=torch.int64), grid, right=True)
        lut = order[rank]
        self.grid_lut = torch.cat((lut, order[:1], torch.zeros(3, dtype=order.dtype))).to(torch.uint8)


_CODEBOOK_TABLES: OrderedDict[bytes, CodebookTable] = OrderedDict()
_CODEBOOK_CACHE_SIZE = 32


def codebook_table(code: torch.Tensor) -> CodebookTable:
    """Search tables of the 8-bit rule for ``code`` (1-d float, 2..256 values), cached by value."""
    values = code.detach().reshape(-1).to(device="cpu", dtype=torch.float32).contiguous()
    key = struct.pack(f"<{values.numel()}f", *values.tolist())
    table = _CODEBOOK_TABLES.get(key)
    if table is not None:
        _CODEBOOK_TABLES.move_to_end(key)
        return table
    table = _CODEBOOK_TABLES[key] = CodebookTable(values)
    if len(_CODEBOOK_TABLES) > _CODEBOOK_CACHE_SIZE:
        _CODEBOOK_TABLES.popitem(last=False)
    return table


def codebook_search_table(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(thresholds, order)`` of the 8-bit rule for ``code``, on the CPU: float32[len - 1]
    thresholds and int64[len] codes in value order, ``code_index = order[#{j : s >= T_j}]``."""
    table = codebook_table(code)
    return table.thresholds, table.order
