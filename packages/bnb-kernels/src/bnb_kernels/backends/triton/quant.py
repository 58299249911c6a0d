"""Triton kernels of blockwise 8-bit and 4-bit (NF4/FP4) quantization, for CUDA devices.

Codes are bit-identical to ``backends/reference/quant.py`` (the specification):

- absmax per block in float32 (NaN when the block holds a NaN); ``s = x * (1 / absmax)`` with
  IEEE division (``div_rn``: Triton's ``/`` on float32 is approximate on NVIDIA GPUs);
- 8-bit: ``code = order[#{j : s >= T_j}]`` with ``(T, order) = codebooks.codebook_search_table``;
- 4-bit: ``code = order[#{j : s > m_j}]`` with ``(m, order) = codebooks.fourbit_search_table``.

The kernels never re-derive those tables: they read them, built on the host from the
reference's own functions, in one of two layouts (``_tree_search``, ``_lut_code``):

- a branch-free binary search over the sorted thresholds stored in breadth-first
  (Eytzinger) order, so the first levels of every warp's lookups fall in one cache line;
- for NF4, a 65-bin table over ``s`` in [-1, 1] whose every bin holds at most one
  threshold: the bin comes from float arithmetic, then one comparison picks between the
  bin's two codes. The table is checked against the reference on the host before use.

Each program handles a tile of ``BPP`` whole blocks (``[BPP, blocksize]``), so absmax is a
row reduction in registers; full tiles run unmasked (vectorized), the last one masked.

Quantizing has two variants per op (``variant=`` argument, else the environment variable
``BNB_TRITON_QUANTIZE_4BIT_VARIANT`` / ``BNB_TRITON_QUANTIZE_BLOCKWISE_VARIANT``, else
``TUNING``); both give the same bytes:

- 4-bit "tiles" (the layouts above) and "rows" (NF4; FP4 and any table that does not fit
  fall back to "tiles"): each thread owns a chunk of 64 consecutive elements of one block, so
  the block maximum and ``1 / absmax`` cost little per element; the bin comes from the float
  bits of ``s * 256 + c``, already shifted to the byte offset of a 1024-byte aligned table
  (one LOP3 gives the address), one 8-byte gather gives a threshold and a rank, the code is
  ``rank + (s > t)``, and 8 codes are packed into one int32 store. SASS (sm_90, Triton 3.9)
  of the unmasked path: ~13.3 instructions per element against ~22 for "tiles".
- 8-bit "tree" (the Eytzinger search: 7 dependent gathers, ~49 instructions per element) and
  "grid": ``G = floor(float64(s) * 32767.5) + 32768`` is the exact 16-bit grid index of the
  reference rule (the float64 product is exact), and one gather from the 64 KiB
  ``CodebookTable.grid_lut`` gives the code (~12 instructions per element, one gather; the
  streamed input bypasses L1 so that the table stays there). Codebooks whose NaN / +-inf
  codes the clamped grid cannot give (values outside [-1, 1]) use "tree".

The last, partial tile of a "rows"/"grid" launch runs the masked "tiles"/"tree" code.
Offsets are 64-bit at the tile base, so tensors of more than 2**31 elements work. No
function here synchronizes with the host, except building the 8-bit tables the first time
a codebook tensor is seen.
"""

import os
from collections import OrderedDict

import torch

from ..._registry import register
from ...codebooks import codebook_table, fourbit_search_table, fourbit_table
from ...ops.quant import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT, FLOAT_DTYPES, QUANT_STORAGE_DTYPES, num_blocks
from ..reference.quant import fourbit_codes, search_codebook
from ._common import available, check_device, device_guard, interpreting, tl, triton

__all__ = [
    "dequantize_4bit",
    "dequantize_4bit_out",
    "dequantize_blockwise",
    "dequantize_blockwise_out",
    "quantize_4bit",
    "quantize_blockwise",
]

# Launch shapes: elements per program (a multiple of the block size) and warps.
# Measured with scripts/gpu-check-quant.sh on one H100 80GB HBM3 (torch 2.11, Triton 3.6),
# 2026-11-25, do_bench medians; device copy ceiling 2989 GB/s in the same run:
#   quantize_4bit nf4 bs64 8192x8192 bf16     1805-1835 GB/s over tiles 1024-4096, 4/8 warps
#                                              (bin table; the tree search: 1669-1729 GB/s)
#   dequantize_4bit nf4 bs64 -> bf16          2650-2675 GB/s (tiles 2048-8192; 16384: 2363)
#   quantize_blockwise fp32 bs256 (64 M)      1970 GB/s (ADDR32 + 2 scalar levels; 1722 without
#                                              ADDR32, 1891 with 1 scalar level, 1678-1937 other tiles)
#   dequantize_blockwise fp32 bs256           2711-2757 GB/s
# The defaults below are the configurations the GPU tests checked, within 1% of the best.
# "rows" (4-bit) and "grid" (8-bit) are new and not yet timed on a GPU: the defaults are the
# expected winners (fewer instructions per element, one gather instead of up to seven
# dependent ones); scripts/gpu-check-quant.sh times every variant and launch shape.
TUNING = {
    "quantize_blockwise": {
        "variant": "grid",
        "tile": 2048,
        "num_warps": 4,
        "sel_levels": 2,
        "addr32": True,
        "grid_warps": 4,
        "grid_per_thread": 64,
        # H100 run 2026-11-25 (scripts/gpu-check-quant.sh): nopair nostream 2428 GB/s,
        # nopair stream 2399, pair nostream 2298, pair stream 2182.
        "grid_stream": False,
        "pair": False,
    },
    "dequantize_blockwise": {"tile": 4096, "num_warps": 4},
    "quantize_4bit": {
        "variant": "rows",
        "tile": 2048,
        "num_warps": 4,
        "lut": True,
        "addr32": True,
        "rows_warps": 4,
        "rows_per_thread": 64,
        # H100 run 2026-11-25: rows w4 pair 2284 GB/s, w4 pt32 2253, w4 pt64 2132, tiles 1798.
        "pair": True,
    },
    "dequantize_4bit": {"tile": 4096, "num_warps": 4},
}

# 4-bit bin table: bin k = round(s * LUT_SCALE + LUT_SCALE + 1) in 1..2 * LUT_SCALE + 1.
LUT_SCALE = 32
LUT_SIZE = 128
_ROUND_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds a float32 in [0, 2**22) to an integer


# --------------------------------------------------------------------------------------
# Shared device helpers
# --------------------------------------------------------------------------------------


@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _row_absmax(x):
    """Per-row max |x| of a float32 [R, C] tile; a NaN anywhere in a row gives NaN."""
    return tl.reduce(tl.abs(x), 1, _max_nan)


@triton.jit
def _inverse(absmax):
    return tl.math.div_rn(tl.full(absmax.shape, 1.0, tl.float32), absmax)


@triton.jit
def _to_out(v, dtype: tl.constexpr, EXACT_BF16: tl.constexpr):
    """Round float32 v to the output dtype (nearest even). Triton's interpreter truncates
    float32 -> bfloat16, so under it (EXACT_BF16) the rounding is done on the bits."""
    if EXACT_BF16 and dtype == tl.bfloat16:
        bits = v.to(tl.int32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(v != v, 0x7FC0, rounded)
        return rounded.to(tl.int16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(dtype)


@triton.jit
def _to_f32(x, EXACT_BF16: tl.constexpr):
    """Widen to float32. The interpreter's bfloat16 -> float32 conversion loses subnormals,
    so under it (EXACT_BF16) the bits are shifted instead (what the GPU does)."""
    if EXACT_BF16 and x.dtype == tl.bfloat16:
        return (x.to(tl.int16, bitcast=True).to(tl.int32) << 16).to(tl.float32, bitcast=True)
    else:
        return x.to(tl.float32)


@triton.jit
def _passes(s, t, INCLUSIVE: tl.constexpr):
    """Whether s counts threshold t: s >= t (8-bit rule) or s > t (4-bit rule). NaN: never."""
    if INCLUSIVE:
        return s >= t
    else:
        return s > t


@triton.jit
def _load32(hi, lo, ptr_like):
    """Load from the address ``hi | lo`` (lo: the low 32 bits, as int32).

    Gathers from a small table whose bytes do not cross a 4 GiB boundary (checked on the
    host) only need 32-bit offset arithmetic: this saves the 64-bit address computation
    (two integer instructions) of every lookup.
    """
    return tl.load((hi | (lo.to(tl.int64) & 0xFFFFFFFF)).to(ptr_like.dtype))


@triton.jit
def _tree_search(s, tree_ptr, order_ptr, LEVELS: tl.constexpr, INCLUSIVE: tl.constexpr, SEL_LEVELS: tl.constexpr,
                 ADDR32: tl.constexpr):  # fmt: skip
    """``order[#{j : s passes T_j}]`` for 2**LEVELS - 1 sorted thresholds T stored in
    breadth-first order at tree[1..] (children of node i at 2i and 2i + 1).

    After LEVELS steps the node index i is 2**LEVELS + (the count). The first SEL_LEVELS
    levels (1 or 2) read scalars (level 2 selects between two) instead of gathering.
    With ADDR32 the walk tracks the low 32 bits of the node's address (4 i + lo0) instead of i.
    """
    i = tl.where(_passes(s, tl.load(tree_ptr + 1), INCLUSIVE), 3, 2)
    if SEL_LEVELS >= 2:
        t = tl.where(i == 3, tl.load(tree_ptr + 3), tl.load(tree_ptr + 2))
        i = 2 * i + _passes(s, t, INCLUSIVE).to(tl.int32)
    if ADDR32:
        base = tree_ptr.to(tl.int64)
        hi = base & -4294967296
        lo0 = base.to(tl.int32)
        lo = lo0 + 4 * i
        step_yes = 4 - lo0
        step_no = -lo0
        for _ in tl.static_range(LEVELS - SEL_LEVELS):
            lo = 2 * lo + tl.where(_passes(s, _load32(hi, lo, tree_ptr), INCLUSIVE), step_yes, step_no)
        i = (lo - lo0) >> 2
    else:
        for _ in tl.static_range(LEVELS - SEL_LEVELS):
            i = 2 * i + _passes(s, tl.load(tree_ptr + i), INCLUSIVE).to(tl.int32)
    return tl.load(order_ptr + (i - (1 << LEVELS))).to(tl.int32)


@triton.jit
def _lut_code(s, lut_ptr, SCALE: tl.constexpr, ADDEND: tl.constexpr, SIZE: tl.constexpr, ADDR32: tl.constexpr):
    """4-bit code of s from the bin table: entry = threshold bits | (lo | hi << 8) << 32.

    s is clamped to [-1, 1] for the bin only (NaN -> -1: the first bin, whose low code is
    the NaN code); adding ADDEND (1.5 * 2**23 + SCALE + 1) leaves the rounded bin number in
    the low bits of the float. The comparison uses s itself.
    """
    sc = tl.minimum(tl.maximum(s, -1.0), 1.0)
    k = (sc * SCALE + ADDEND).to(tl.int32, bitcast=True) & (SIZE - 1)
    if ADDR32:
        base = lut_ptr.to(tl.int64)
        e = _load32(base & -4294967296, base.to(tl.int32) + 8 * k, lut_ptr)
    else:
        e = tl.load(lut_ptr + k)
    t = e.to(tl.int32).to(tl.float32, bitcast=True)
    c = (e >> 32).to(tl.int32)
    return tl.where(s > t, c >> 8, c & 0xFF)


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


# Each kernel's tile body is one helper called twice: unmasked for full tiles (so loads and
# stores vectorize whatever n is) and masked for the last, partial tile.


@triton.jit
def _quantize_blockwise_tile(a_ptr, tree_ptr, order_ptr, out_ptr, absmax_ptr, rem, nblocks, pid,
                             BS: tl.constexpr, BPP: tl.constexpr, SEL_LEVELS: tl.constexpr, ADDR32: tl.constexpr,
                             EXACT_BF16: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    rows = tl.arange(0, BPP)
    local = rows[:, None] * BS + tl.arange(0, BS)[None, :]
    blk = pid * BPP + rows
    if MASKED:
        mask = local < rem
        x = _to_f32(tl.load(a_ptr + local, mask=mask, other=0.0), EXACT_BF16)
    else:
        x = _to_f32(tl.load(a_ptr + local), EXACT_BF16)
    absmax = _row_absmax(x)
    s = x * _inverse(absmax)[:, None]
    q = _tree_search(s, tree_ptr, order_ptr, 8, True, SEL_LEVELS, ADDR32).to(tl.uint8)
    if MASKED:
        tl.store(absmax_ptr + blk, absmax, mask=blk < nblocks)
        tl.store(out_ptr + local, q, mask=mask)
    else:
        tl.store(absmax_ptr + blk, absmax)
        tl.store(out_ptr + local, q)


@triton.jit
def _quantize_blockwise_kernel(a_ptr, tree_ptr, order_ptr, out_ptr, absmax_ptr, n, nblocks,
                               BS: tl.constexpr, BPP: tl.constexpr, SEL_LEVELS: tl.constexpr, ADDR32: tl.constexpr,
                               EXACT_BF16: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (BPP * BS)
    rem = n - base
    if rem >= BPP * BS:
        _quantize_blockwise_tile(a_ptr + base, tree_ptr, order_ptr, out_ptr + base, absmax_ptr, rem, nblocks, pid,
                                 BS, BPP, SEL_LEVELS, ADDR32, EXACT_BF16, False)  # fmt: skip
    else:
        _quantize_blockwise_tile(a_ptr + base, tree_ptr, order_ptr, out_ptr + base, absmax_ptr, rem.to(tl.int32),
                                 nblocks, pid, BS, BPP, SEL_LEVELS, ADDR32, EXACT_BF16, True)  # fmt: skip


@triton.jit
def _dequantize_blockwise_tile(q_ptr, absmax_ptr, code_ptr, out_ptr, rem, nblocks, pid,
                               BS: tl.constexpr, BPP: tl.constexpr, EXACT_BF16: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    rows = tl.arange(0, BPP)
    local = rows[:, None] * BS + tl.arange(0, BS)[None, :]
    blk = pid * BPP + rows
    if MASKED:
        mask = local < rem
        q = tl.load(q_ptr + local, mask=mask, other=0)
        scale = tl.load(absmax_ptr + blk, mask=blk < nblocks, other=0.0)
    else:
        q = tl.load(q_ptr + local)
        scale = tl.load(absmax_ptr + blk)
    v = _to_out(tl.load(code_ptr + q.to(tl.int32)) * scale[:, None], out_ptr.dtype.element_ty, EXACT_BF16)
    if MASKED:
        tl.store(out_ptr + local, v, mask=mask)
    else:
        tl.store(out_ptr + local, v)


@triton.jit
def _dequantize_blockwise_kernel(q_ptr, absmax_ptr, code_ptr, out_ptr, n, nblocks,
                                 BS: tl.constexpr, BPP: tl.constexpr, EXACT_BF16: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (BPP * BS)
    rem = n - base
    if rem >= BPP * BS:
        _dequantize_blockwise_tile(q_ptr + base, absmax_ptr, code_ptr, out_ptr + base, rem, nblocks, pid,
                                   BS, BPP, EXACT_BF16, False)  # fmt: skip
    else:
        _dequantize_blockwise_tile(q_ptr + base, absmax_ptr, code_ptr, out_ptr + base, rem.to(tl.int32), nblocks, pid,
                                   BS, BPP, EXACT_BF16, True)  # fmt: skip


@triton.jit
def _quantize_4bit_tile(a_ptr, tab_ptr, order_ptr, out_ptr, absmax_ptr, rem, nblocks, pid, BS: tl.constexpr,
                        BPP: tl.constexpr, LUT: tl.constexpr, L_SCALE: tl.constexpr, L_ADDEND: tl.constexpr,
                        L_SIZE: tl.constexpr, ADDR32: tl.constexpr, EXACT_BF16: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    rows = tl.arange(0, BPP)
    local = rows[:, None] * BS + tl.arange(0, BS)[None, :]
    blk = pid * BPP + rows
    if MASKED:
        mask = local < rem
        x = _to_f32(tl.load(a_ptr + local, mask=mask, other=0.0), EXACT_BF16)
    else:
        x = _to_f32(tl.load(a_ptr + local), EXACT_BF16)
    absmax = _row_absmax(x)
    s = x * _inverse(absmax)[:, None]
    if LUT:
        code = _lut_code(s, tab_ptr, L_SCALE, L_ADDEND, L_SIZE, ADDR32)
    else:
        code = _tree_search(s, tab_ptr, order_ptr, 4, False, 2, ADDR32)
    if MASKED:
        # Elements past the end pad the last byte with code 0 (as the reference packs them).
        code = tl.where(mask, code, 0)
    first, second = tl.split(tl.reshape(code, [BPP, BS // 2, 2]))
    packed = ((first << 4) | second).to(tl.uint8)
    blocal = rows[:, None] * (BS // 2) + tl.arange(0, BS // 2)[None, :]
    if MASKED:
        tl.store(absmax_ptr + blk, absmax, mask=blk < nblocks)
        tl.store(out_ptr + blocal, packed, mask=blocal < (rem + 1) // 2)
    else:
        tl.store(absmax_ptr + blk, absmax)
        tl.store(out_ptr + blocal, packed)


@triton.jit
def _quantize_4bit_kernel(a_ptr, tab_ptr, order_ptr, out_ptr, absmax_ptr, n, nblocks, BS: tl.constexpr,
                          BPP: tl.constexpr, LUT: tl.constexpr, L_SCALE: tl.constexpr, L_ADDEND: tl.constexpr,
                          L_SIZE: tl.constexpr, ADDR32: tl.constexpr, EXACT_BF16: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (BPP * BS)
    rem = n - base
    if rem >= BPP * BS:
        _quantize_4bit_tile(a_ptr + base, tab_ptr, order_ptr, out_ptr + base // 2, absmax_ptr, rem, nblocks, pid,
                            BS, BPP, LUT, L_SCALE, L_ADDEND, L_SIZE, ADDR32, EXACT_BF16, False)  # fmt: skip
    else:
        _quantize_4bit_tile(a_ptr + base, tab_ptr, order_ptr, out_ptr + base // 2, absmax_ptr, rem.to(tl.int32),
                            nblocks, pid, BS, BPP, LUT, L_SCALE, L_ADDEND, L_SIZE, ADDR32, EXACT_BF16, True)  # fmt: skip


@triton.jit
def _dequantize_4bit_tile(q_ptr, absmax_ptr, table_ptr, out_ptr, rem, nblocks, pid,
                          BS: tl.constexpr, BPP: tl.constexpr, EXACT_BF16: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    rows = tl.arange(0, BPP)
    blocal = rows[:, None] * (BS // 2) + tl.arange(0, BS // 2)[None, :]
    local = rows[:, None] * BS + tl.arange(0, BS)[None, :]
    blk = pid * BPP + rows
    if MASKED:
        q = tl.load(q_ptr + blocal, mask=blocal < (rem + 1) // 2, other=0).to(tl.int32)
        scale = tl.load(absmax_ptr + blk, mask=blk < nblocks, other=0.0)[:, None]
    else:
        q = tl.load(q_ptr + blocal).to(tl.int32)
        scale = tl.load(absmax_ptr + blk)[:, None]
    first = tl.load(table_ptr + (q >> 4)) * scale
    second = tl.load(table_ptr + (q & 0xF)) * scale
    v = _to_out(tl.reshape(tl.join(first, second), [BPP, BS]), out_ptr.dtype.element_ty, EXACT_BF16)
    if MASKED:
        tl.store(out_ptr + local, v, mask=local < rem)
    else:
        tl.store(out_ptr + local, v)


@triton.jit
def _dequantize_4bit_kernel(q_ptr, absmax_ptr, table_ptr, out_ptr, n, nblocks,
                            BS: tl.constexpr, BPP: tl.constexpr, EXACT_BF16: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (BPP * BS)
    rem = n - base
    if rem >= BPP * BS:
        _dequantize_4bit_tile(q_ptr + base // 2, absmax_ptr, table_ptr, out_ptr + base, rem, nblocks, pid,
                              BS, BPP, EXACT_BF16, False)  # fmt: skip
    else:
        _dequantize_4bit_tile(q_ptr + base // 2, absmax_ptr, table_ptr, out_ptr + base, rem.to(tl.int32), nblocks,
                              pid, BS, BPP, EXACT_BF16, True)  # fmt: skip


# --------------------------------------------------------------------------------------
# "rows" variants: one thread owns whole rows (or row chunks) of W * V elements
# --------------------------------------------------------------------------------------
#
# A tile is indexed [W, R, G, H, V]: R rows (blocks) of BS = G * W * H * V elements; along a
# row, G chunks of W * H * V contiguous elements, each chunk held by H (1 or 2) lanes as W
# vectors of V contiguous elements (V = 16 bytes of input), the H lanes' vectors interleaved
# (with H = 2 each load instruction reads whole 32-byte sectors). Triton lays the lanes over
# H, G then R, so a thread holds W * V elements of one row: the row maximum is mostly an
# in-thread reduction (shuffles only across the G * H lanes of a row), and 1 / absmax is
# computed once per W * V elements instead of once per V.


@triton.jit
def _rows_offsets(BS: tl.constexpr, R: tl.constexpr, G: tl.constexpr, W: tl.constexpr, H: tl.constexpr,
                  V: tl.constexpr):  # fmt: skip
    w = tl.arange(0, W)[:, None, None, None, None]
    r = tl.arange(0, R)[None, :, None, None, None]
    g = tl.arange(0, G)[None, None, :, None, None]
    h = tl.arange(0, H)[None, None, None, :, None]
    v = tl.arange(0, V)[None, None, None, None, :]
    return r * BS + g * (W * H * V) + w * (H * V) + h * V + v


@triton.jit
def _rows_absmax(x):
    """[R] max |x| of a [W, R, G, H, V] tile (NaN when a row holds a NaN)."""
    m = tl.reduce(tl.reduce(tl.abs(x), 4, _max_nan), 0, _max_nan)  # [R, G, H], in-thread
    return tl.reduce(tl.reduce(m, 2, _max_nan), 1, _max_nan)


@triton.jit
def _nf4_rows_code(s, lut_ptr, ADDEND: tl.constexpr, CLAMP: tl.constexpr, PTR_BITS: tl.constexpr):
    """Rank (= NF4 code) of each s from the 128-entry bin table (see ``_rows4_table``).

    bin = the bits of fl(s * 256 + ADDEND) & 0x3F8 (8 * bin: the byte offset of the entry);
    the entry holds a threshold t and the rank of the bin's lowest values: rank + (s > t).
    The table is 1024-byte aligned, so OR-ing the offset into the low word of its address
    is the address (one instruction instead of a 64-bit add). s is clamped to 2 (NaN kept)
    so +inf lands in a bin of its own.
    """
    sc = tl.minimum(s, CLAMP, propagate_nan=tl.PropagateNan.ALL)
    bits = tl.fma(sc, 256.0, ADDEND).to(tl.int32, bitcast=True)
    if PTR_BITS:
        base = lut_ptr.to(tl.int64)
        lo = (bits & 0x3F8) | base.to(tl.int32)
        e = tl.load(((base & -4294967296) | (lo.to(tl.int64) & 0xFFFFFFFF)).to(lut_ptr.dtype))
    else:  # old interpreters get pointer <-> integer casts wrong: plain indexing, same entry
        e = tl.load(lut_ptr + ((bits & 0x3F8) >> 3))
    t = e.to(tl.int32).to(tl.float32, bitcast=True)
    return (e >> 32).to(tl.int32) + (s > t).to(tl.int32)


@triton.jit
def _quantize_4bit_rows_kernel(a_ptr, lut_ptr, bins_ptr, out_ptr, out_words_ptr, absmax_ptr, n, nblocks,
                               BS: tl.constexpr, R: tl.constexpr, G: tl.constexpr, W: tl.constexpr,
                               H: tl.constexpr, PTR_BITS: tl.constexpr, ADDEND: tl.constexpr, CLAMP: tl.constexpr, L_SCALE: tl.constexpr,
                               L_ADDEND: tl.constexpr, L_SIZE: tl.constexpr, EXACT_BF16: tl.constexpr):  # fmt: skip
    """NF4 codes, 8 per int32 word (first element in the high nibble of the low byte)."""
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (R * BS)
    rem = n - base
    if rem >= R * BS:
        x = _to_f32(tl.load(a_ptr + base + _rows_offsets(BS, R, G, W, H, 8)), EXACT_BF16)
        absmax = _rows_absmax(x)
        s = x * _inverse(absmax)[None, :, None, None, None]
        code = _nf4_rows_code(s, lut_ptr, ADDEND, CLAMP, PTR_BITS)
        j = tl.arange(0, 8)[None, None, None, None, :]
        word = tl.sum(code << ((j ^ 1) * 4), axis=4)  # [W, R, G, H]
        # A row holding a NaN has s = NaN everywhere: code 0 whatever bits the NaN has.
        word = tl.where((absmax == absmax)[None, :, None, None], word, 0)
        tl.store(absmax_ptr + pid * R + tl.arange(0, R), absmax)
        woff = (tl.arange(0, R)[None, :, None, None] * (BS // 8) + tl.arange(0, G)[None, None, :, None] * (W * H)
                + tl.arange(0, W)[:, None, None, None] * H + tl.arange(0, H)[None, None, None, :])  # fmt: skip
        tl.store(out_words_ptr + pid * (R * BS // 8) + woff, word)
    else:
        _quantize_4bit_tile(a_ptr + base, bins_ptr, bins_ptr, out_ptr + base // 2, absmax_ptr, rem.to(tl.int32),
                            nblocks, pid, BS, R, True, L_SCALE, L_ADDEND, L_SIZE, False, EXACT_BF16, True)  # fmt: skip


@triton.jit
def _grid_code(s, grid_mid_ptr):
    """8-bit code of s through the 16-bit grid: G = floor(s * 32767.5) + 32768 exactly (the
    float64 product of a float32 and 32767.5 is exact), code = grid_lut[G]. s is clamped to
    [-1, 1] first (NaN -> -1: PTX max/min return the non-NaN operand); the host only picks
    this path when that gives the codes of NaN and of +-inf."""
    sc = tl.minimum(tl.maximum(s, -1.0), 1.0)
    g = tl.math.floor(sc.to(tl.float64) * 32767.5).to(tl.int32)
    return tl.load(grid_mid_ptr + g)


@triton.jit
def _quantize_blockwise_rows_kernel(a_ptr, grid_mid_ptr, tree_ptr, order_ptr, out_ptr, absmax_ptr, n, nblocks,
                                    BS: tl.constexpr, R: tl.constexpr, G: tl.constexpr, W: tl.constexpr,
                                    H: tl.constexpr, V: tl.constexpr, STREAM: tl.constexpr, EXACT_BF16: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (R * BS)
    rem = n - base
    if rem >= R * BS:
        offs = _rows_offsets(BS, R, G, W, H, V)
        if STREAM:  # keep the streamed input out of L1, where the 64 KiB grid table lives
            x = tl.load(a_ptr + base + offs, cache_modifier=".cg")
        else:
            x = tl.load(a_ptr + base + offs)
        x = _to_f32(x, EXACT_BF16)
        absmax = _rows_absmax(x)
        s = x * _inverse(absmax)[None, :, None, None, None]
        q = _grid_code(s, grid_mid_ptr)
        tl.store(absmax_ptr + pid * R + tl.arange(0, R), absmax)
        tl.store(out_ptr + base + offs, q)
    else:
        _quantize_blockwise_tile(a_ptr + base, tree_ptr, order_ptr, out_ptr + base, absmax_ptr, rem.to(tl.int32),
                                 nblocks, pid, BS, R, 2, False, EXACT_BF16, True)  # fmt: skip


# --------------------------------------------------------------------------------------
# Host side: validation, launch shapes, registration
# --------------------------------------------------------------------------------------


def _breadth_first(sorted_values: torch.Tensor, levels: int) -> torch.Tensor:
    """The 2**levels - 1 sorted values in breadth-first order at [1:] (index 0 unused)."""
    size = 1 << levels
    node = torch.arange(1, size)
    depth = torch.floor(torch.log2(node.double())).long()
    rank = (2 * (node - (1 << depth)) + 1) * (1 << (levels - 1 - depth)) - 1
    out = torch.empty(size, dtype=sorted_values.dtype)
    out[0] = 0
    out[1:] = sorted_values[rank]
    return out


def _search_tree(thresholds: torch.Tensor, order: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tree float32[2**levels], order uint8[2**levels]) for ``_tree_search``: thresholds
    padded with +inf (never passed by a finite s), order padded with its last code."""
    size = 1 << levels
    t = torch.full((size - 1,), float("inf"), dtype=torch.float32)
    t[: thresholds.numel()] = thresholds.to(torch.float32)
    o = torch.full((size,), int(order[-1]), dtype=torch.int64)
    o[: order.numel()] = order
    return _breadth_first(t, levels), o.to(torch.uint8)


_CODE8_TABLES: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = OrderedDict()
_CODE8_CACHE_SIZE = 16


def _code8_tables(code: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Device search tables of the 8-bit rule for ``code``: (tree, order, grid) where grid is
    ``CodebookTable.grid_lut`` (uint8, code of each 16-bit grid index) sliced to start at
    index 32768, or None when the grid path cannot give the codes of NaN and +-inf (see
    ``_grid_code``; only for codebooks with values outside [-1, 1]).

    Built on the host from ``codebooks.codebook_table`` (which reads the code's values:
    one synchronization) the first time a code tensor is seen, then cached by its storage,
    version counter and device. The cache keeps the tensor alive, so its memory cannot be
    reused by another tensor while cached; an in-place change bumps the version.
    """
    try:
        version = code._version
    except RuntimeError:  # inference tensors have no version counter: no caching
        version = None
    key = (code.data_ptr(), code.device, version, code.dtype, code.numel(), code.stride(), device)
    hit = _CODE8_TABLES.get(key) if version is not None else None
    if hit is not None:
        _CODE8_TABLES.move_to_end(key)
        return hit[1], hit[2], hit[3]
    table = codebook_table(code)
    tree, order8 = _search_tree(table.thresholds, table.order, 8)
    tree, order8 = tree.to(device), order8.to(device)
    grid = None
    special = search_codebook(torch.tensor([float("nan"), -float("inf"), float("inf")]), code.detach().cpu())
    lut = table.grid_lut
    if int(special[0]) == int(lut[0]) and int(special[1]) == int(lut[0]) and int(special[2]) == int(lut[65535]):
        grid = lut.to(device)[32768:]
    if version is not None:
        _CODE8_TABLES[key] = (code, tree, order8, grid)
        if len(_CODE8_TABLES) > _CODE8_CACHE_SIZE:
            _CODE8_TABLES.popitem(last=False)
    return tree, order8, grid


def _ptr_bits_ok() -> bool:
    """Whether kernels may build addresses from pointer bits (``_load32``, ``_nf4_rows_code``):
    always on a GPU; under the interpreter only from Triton 3.4 (Triton 3.0's interpreter
    casts pointers to integers wrongly), older ones index plainly (the same entries)."""
    if not interpreting():
        return True
    try:
        return tuple(int(v) for v in triton.__version__.split(".")[:2]) >= (3, 4)
    except ValueError:  # pragma: no cover - unusual version strings
        return False


def _fits_addr32(t: torch.Tensor) -> bool:
    """Whether t's bytes lie inside one 4 GiB-aligned window (see ``_load32``)."""
    start = t.data_ptr() & 0xFFFFFFFF
    return start + t.numel() * t.element_size() <= 1 << 32


def _lut_addend() -> float:
    return _ROUND_MAGIC + LUT_SCALE + 1


def _emulate_lut(s: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """What ``_lut_code`` computes, in torch on the CPU (used to check a table)."""
    sc = torch.clamp(s.nan_to_num(nan=-1.0), -1.0, 1.0)
    k = (sc * LUT_SCALE + _lut_addend()).view(torch.int32) & (LUT_SIZE - 1)
    e = lut[k.long()]
    t = (e & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
    c = e >> 32
    return torch.where(s > t, c >> 8, c & 0xFF)


def _fourbit_lut(quant_type: str) -> torch.Tensor | None:
    """int64[LUT_SIZE] bin table for ``_lut_code``, or None when some bin would hold two
    distinct thresholds or the table disagrees with the reference on the check values."""
    mids, order = fourbit_search_table(quant_type)
    lut = torch.zeros(LUT_SIZE, dtype=torch.int64)
    inf_bits = int(torch.tensor(float("inf")).view(torch.int32))
    for k in range(LUT_SIZE):
        # Values whose bin is k: round(s * S + S + 1) == k (ties either way), s in [-1, 1].
        lo = (k - 1.5 - LUT_SCALE) / LUT_SCALE
        hi = (k - 0.5 - LUT_SCALE) / LUT_SCALE
        inside = mids[(mids >= lo) & (mids <= hi)]
        if inside.numel() and not bool((inside == inside[0]).all()):
            return None
        below = int((mids < lo).sum()) if 1 <= k <= 2 * LUT_SCALE + 1 else 0
        if inside.numel():
            t_bits = int(inside[:1].view(torch.int32))
            codes = int(order[below]) | int(order[below + inside.numel()]) << 8
        else:
            t_bits = inf_bits
            codes = int(order[below]) * 0x101
        lut[k] = (t_bits & 0xFFFFFFFF) | codes << 32
    check = _lut_check_values(mids)
    if not torch.equal(_emulate_lut(check, lut), fourbit_codes(check, quant_type).long()):
        return None
    return lut


def _lut_check_values(mids: torch.Tensor) -> torch.Tensor:
    grid = torch.linspace(-1.0, 1.0, 40001, dtype=torch.float32)
    edges = (torch.arange(0, 2 * LUT_SCALE + 3, dtype=torch.float32) - 0.5 - LUT_SCALE) / LUT_SCALE
    points = torch.cat((mids.float(), edges, grid))
    bits = points.view(torch.int32)
    near = torch.cat([(bits + d).view(torch.float32) for d in (-2, -1, 1, 2)])
    special = torch.tensor(
        [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 1e-45, -1e-45, float("inf"), -float("inf"), float("nan")]
    )
    return torch.cat((points, near, special))


# "rows" NF4 table: bin = bits(fl(min(s, 2) * 256 + ROWS4_ADDEND)) & 0x3F8 >> 3; finite s in
# [-1 - 2**-23, 1 + 2**-23] falls in bins 1..65 (half-open 1/32-wide bins), -inf and x86 NaN
# in bin 0, NVIDIA's NaN (0x7FFFFFFF) in bin 127 and +inf (clamped to 2) in bin 97.
ROWS4_ADDEND = 12582912.0 + 268.0
ROWS4_CLAMP = 2.0
_FLT_MAX_BITS = 0x7F7FFFFF


def _rows4_bin(s: torch.Tensor) -> torch.Tensor:
    """What ``_nf4_rows_code`` computes as the bin of float32 s (NaN: bin 0), on the CPU."""
    s = s.to(torch.float32)
    sc = torch.where(s.isnan(), torch.full_like(s, -float("inf")), torch.clamp(s, max=ROWS4_CLAMP))
    v = sc * 256.0 + ROWS4_ADDEND
    return (v.view(torch.int32) & 0x3F8) >> 3


def _rows4_entries(quant_type: str) -> torch.Tensor | None:
    """int64[128] entries ``threshold bits | rank << 32`` of the "rows" table for quant_type,
    or None when it does not apply (codes not in value order, or two thresholds in a bin),
    or when its emulation disagrees with the reference on the check values."""
    mids, order = fourbit_search_table(quant_type)
    if not torch.equal(order, torch.arange(order.numel())):
        return None
    kb = _rows4_bin(mids)
    t_bits = torch.full((128,), _FLT_MAX_BITS, dtype=torch.int64)
    rank = torch.zeros(128, dtype=torch.int64)
    for k in range(1, 66):
        inside = mids[kb == k]
        if inside.numel() > 1:
            return None
        rank[k] = int((kb < k).sum())
        if inside.numel():
            t_bits[k] = int(inside.view(torch.int32)[0]) & 0xFFFFFFFF
    top = int(_rows4_bin(torch.tensor([float("inf")]))[0])
    if top in range(0, 66) or top == 127:
        return None
    rank[top] = order.numel() - 2  # +inf passes the FLT_MAX threshold: the last code
    entries = t_bits | (rank << 32)
    check = _rows4_check_values(mids)
    if not torch.equal(_emulate_rows4(check, entries), fourbit_codes(check, quant_type).long()):
        return None
    return entries


def _emulate_rows4(s: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
    """What ``_nf4_rows_code`` computes, in torch on the CPU (NaN: code 0, the row rule)."""
    e = entries[_rows4_bin(s).long()]
    t = (e & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
    code = (e >> 32) + (s > t).long()
    return torch.where(s.isnan(), torch.zeros_like(code), code)


def _rows4_check_values(mids: torch.Tensor) -> torch.Tensor:
    k8 = torch.arange(0, 67, dtype=torch.float32) * 8 - 268
    edges = torch.cat((k8 - 0.5, k8, k8 + 0.5)) / 256  # bin edges and rounding ties around them
    grid = torch.linspace(-1.0, 1.0, 40001, dtype=torch.float32)
    one = torch.tensor([1.0, -1.0])
    points = torch.cat((mids.float(), edges, grid, one))
    bits = points.view(torch.int32)
    near = torch.cat([(bits + d).view(torch.float32) for d in (-2, -1, 1, 2)])
    values = torch.cat((points, near))
    values = values[values.abs() <= 1 + 2**-22]  # |x * (1 / absmax)| <= 1 + 2**-23 when finite
    special = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45, float("inf"), -float("inf"), float("nan")])
    return torch.cat((values, special))


_ROWS4_TABLES: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor] | None] = {}


def _rows4_table(quant_type: str, device: torch.device) -> torch.Tensor | None:
    """The "rows" table on ``device``, 1024-byte aligned (see ``_nf4_rows_code``), or None."""
    key = (quant_type, device)
    if key not in _ROWS4_TABLES:
        entries = _rows4_entries(quant_type)
        if entries is None:
            _ROWS4_TABLES[key] = None
        else:
            backing = torch.zeros(256, dtype=torch.int64, device=device)
            off = (-backing.data_ptr() % 1024) // 8
            table = backing[off : off + 128]
            table.copy_(entries.to(device))
            _ROWS4_TABLES[key] = (backing, table)
    hit = _ROWS4_TABLES[key]
    return None if hit is None else hit[1]


_FOURBIT_TABLES: dict[
    tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]
] = {}


def _fourbit_tables(
    quant_type: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(values float32[16], bin table or None, search tree, order) of ``quant_type`` on ``device``."""
    key = (quant_type, device)
    hit = _FOURBIT_TABLES.get(key)
    if hit is None:
        mids, order = fourbit_search_table(quant_type)
        tree, order8 = _search_tree(mids, order, 4)
        lut = _fourbit_lut(quant_type)
        hit = _FOURBIT_TABLES[key] = (
            fourbit_table(quant_type, device),
            None if lut is None else lut.to(device),
            tree.to(device),
            order8.to(device),
        )
    return hit


def _launch_shape(op: str, blocksize: int, tile: int | None, num_warps: int | None) -> tuple[int, int]:
    cfg = TUNING[op]
    tile = max(tile or cfg["tile"], blocksize)
    if num_warps is None:
        num_warps = cfg["num_warps"] if tile <= 4096 else 8
    return tile // blocksize, num_warps


def _check_float_input(name: str, A: torch.Tensor) -> None:
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(A).__name__}")
    if A.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {A.dtype}")
    check_device(name, A)


def _check_blocksize(blocksize: int, allowed: tuple[int, ...], what: str) -> None:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize not in allowed:
        raise ValueError(f"blocksize for {what} must be one of {allowed}, got {blocksize!r}")


def _check_quant_type(quant_type: str) -> None:
    if quant_type not in ("nf4", "fp4"):
        raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")


def _check_out_dtype(dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32, float16 or bfloat16, got {dtype}")


def _check_absmax(absmax: torch.Tensor, blocks: int, device: torch.device) -> torch.Tensor:
    if not isinstance(absmax, torch.Tensor) or not absmax.is_floating_point():
        raise TypeError("absmax must be a floating-point tensor")
    check_device("absmax", absmax, device)
    if absmax.numel() < blocks:
        raise ValueError(f"absmax must hold at least {blocks} values (one per block), got {absmax.numel()}")
    return absmax.reshape(-1).to(torch.float32).contiguous()


def _check_code(code: torch.Tensor) -> None:
    if not isinstance(code, torch.Tensor) or not code.is_floating_point():
        raise TypeError("code must be a floating-point tensor of 2 to 256 values")
    if not 2 <= code.numel() <= 256:
        raise ValueError(f"code must hold 2 to 256 values, got {code.numel()}")


def _code_values(code: torch.Tensor, device: torch.device) -> torch.Tensor:
    """float32[256] on ``device``: code padded with NaN (codes past its end dequantize to NaN)."""
    values = code.reshape(-1).to(device=device, dtype=torch.float32)
    if values.numel() < 256:
        values = torch.cat((values, values.new_full((256 - values.numel(),), float("nan"))))
    return values.contiguous()


def _write_out(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Validate an ``out`` argument; return a contiguous flat tensor the kernel may write."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
    check_device("out", out, device)
    return out.view(-1) if out.is_contiguous() else torch.empty(out.numel(), dtype=dtype, device=device)


def _variant(op: str, variant: str | None, allowed: tuple[str, ...]) -> str:
    """The kernel variant of ``op``: the argument, else $BNB_TRITON_<OP>_VARIANT, else TUNING."""
    if variant is None:
        variant = os.environ.get(f"BNB_TRITON_{op.upper()}_VARIANT") or TUNING[op]["variant"]
    if variant not in allowed:
        raise ValueError(f"variant for {op} must be one of {allowed}, got {variant!r}")
    return variant


def _rows_shape(blocksize: int, vec: int, per_thread: int, num_warps: int, pair: bool) -> tuple[int, int, int, int]:
    """(R, G, W, H) of a "rows" tile: rows of G chunks, each of H lanes (2 with ``pair``)
    holding W vectors of ``vec`` elements (about ``per_thread`` elements per thread),
    R * G * H = threads (at least 1 row). More than 64 elements per thread spill registers
    (sm_90)."""
    if (
        isinstance(per_thread, bool)
        or not isinstance(per_thread, int)
        or per_thread < 1
        or per_thread & (per_thread - 1)
    ):
        raise ValueError(f"per_thread must be a power of two, got {per_thread!r}")
    if isinstance(num_warps, bool) or not isinstance(num_warps, int) or num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps must be 1, 2, 4, 8 or 16, got {num_warps!r}")
    h = 2 if pair and blocksize >= 2 * vec else 1
    w = max(1, min(blocksize // (h * vec), per_thread // vec))
    g = blocksize // (w * h * vec)
    r = max(1, 32 * num_warps // (g * h))
    return r, g, w, h


@register("quantize_blockwise", "triton", "cuda", available=available)
def quantize_blockwise(
    A: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    *,
    tile: int | None = None,
    num_warps: int | None = None,
    sel_levels: int | None = None,
    addr32: bool | None = None,
    variant: str | None = None,
    per_thread: int | None = None,
    stream: bool | None = None,
    pair: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit blockwise codes of ``A`` and float32 absmax per block.

    ``variant``: "grid" (exact 16-bit grid index and one lookup, when the codebook allows it;
    else "tree") or "tree" (binary search over the thresholds); the other keywords tune
    launches (``tile``/``sel_levels``/``addr32`` for "tree", ``per_thread``/``stream`` for
    "grid", ``num_warps`` for both)."""
    _check_float_input("A", A)
    _check_blocksize(blocksize, BLOCKSIZES_8BIT, "8-bit quantization")
    _check_code(code)
    which = _variant("quantize_blockwise", variant, ("grid", "tree"))
    n = A.numel()
    blocks = num_blocks(n, blocksize)
    out = torch.empty(A.shape, dtype=torch.uint8, device=A.device)
    absmax = torch.empty(blocks, dtype=torch.float32, device=A.device)
    if n == 0:
        return out, absmax
    tree, order, grid = _code8_tables(code, A.device)
    cfg = TUNING["quantize_blockwise"]
    flat = A.contiguous().view(-1)
    if which == "grid" and grid is not None:
        warps = num_warps or cfg["grid_warps"]
        vec = 16 // A.element_size()
        r, g, w, h = _rows_shape(
            blocksize, vec, per_thread or cfg["grid_per_thread"], warps, cfg["pair"] if pair is None else pair
        )
        with device_guard(A.device):
            _quantize_blockwise_rows_kernel[(triton.cdiv(blocks, r),)](
                flat, grid, tree, order, out, absmax, n, blocks, BS=blocksize, R=r, G=g, W=w, H=h, V=vec,
                STREAM=cfg["grid_stream"] if stream is None else stream, EXACT_BF16=interpreting(), num_warps=warps,
            )  # fmt: skip
        return out, absmax
    bpp, warps = _launch_shape("quantize_blockwise", blocksize, tile, num_warps)
    levels = cfg["sel_levels"] if sel_levels is None else sel_levels
    use_addr32 = (cfg["addr32"] if addr32 is None else addr32) and _fits_addr32(tree) and _ptr_bits_ok()
    with device_guard(A.device):
        _quantize_blockwise_kernel[(triton.cdiv(blocks, bpp),)](
            flat, tree, order, out, absmax, n, blocks, BS=blocksize, BPP=bpp, SEL_LEVELS=levels,
            ADDR32=use_addr32, EXACT_BF16=interpreting(), num_warps=warps,
        )  # fmt: skip
    return out, absmax


def _dequantize_blockwise_into(
    A: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    flat_out: torch.Tensor,
    tile: int | None,
    num_warps: int | None,
) -> None:
    if not isinstance(A, torch.Tensor) or A.dtype != torch.uint8:
        raise TypeError(f"A must be a uint8 tensor of 8-bit codes, got {getattr(A, 'dtype', type(A).__name__)}")
    check_device("A", A)
    _check_blocksize(blocksize, BLOCKSIZES_8BIT, "8-bit dequantization")
    n = A.numel()
    blocks = num_blocks(n, blocksize)
    absmax = _check_absmax(absmax, blocks, A.device)
    _check_code(code)
    if n == 0:
        return
    code = _code_values(code, A.device)
    bpp, warps = _launch_shape("dequantize_blockwise", blocksize, tile, num_warps)
    with device_guard(A.device):
        _dequantize_blockwise_kernel[(triton.cdiv(blocks, bpp),)](
            A.contiguous().view(-1),
            absmax,
            code,
            flat_out,
            n,
            blocks,
            BS=blocksize,
            BPP=bpp,
            EXACT_BF16=interpreting(),
            num_warps=warps,
        )


@register("dequantize_blockwise", "triton", "cuda", available=available)
def dequantize_blockwise(
    A: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    dtype: torch.dtype,
    *,
    tile: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    _check_out_dtype(dtype)
    out = torch.empty(A.shape, dtype=dtype, device=A.device)
    _dequantize_blockwise_into(A, absmax, code, blocksize, out.view(-1), tile, num_warps)
    return out


@register("dequantize_blockwise.out", "triton", "cuda", available=available)
def dequantize_blockwise_out(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype, out: torch.Tensor
) -> None:
    _check_out_dtype(dtype)
    flat = _write_out(out, tuple(A.shape), dtype, A.device)
    _dequantize_blockwise_into(A, absmax, code, blocksize, flat, None, None)
    if not out.is_contiguous():
        out.copy_(flat.view(out.shape))


@register("quantize_4bit", "triton", "cuda", available=available)
def quantize_4bit(
    A: torch.Tensor,
    blocksize: int,
    quant_type: str,
    quant_storage: torch.dtype,
    *,
    tile: int | None = None,
    num_warps: int | None = None,
    lut: bool | None = None,
    addr32: bool | None = None,
    variant: str | None = None,
    per_thread: int | None = None,
    pair: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed 4-bit codes (two per byte, first in the high nibble) viewed as ``quant_storage``
    with shape ``[bytes / itemsize, 1]``, and float32 absmax per block.

    ``variant``: "rows" (one thread per row chunk, 8 codes packed per int32 word; NF4 only,
    else "tiles"), "tiles" (``lut`` picks the bin table or the search tree). The other
    keywords tune launches (``tile``/``lut``/``addr32`` for "tiles", ``per_thread`` for
    "rows", ``num_warps`` for both)."""
    _check_float_input("A", A)
    _check_blocksize(blocksize, BLOCKSIZES_4BIT, "4-bit quantization")
    _check_quant_type(quant_type)
    if quant_storage not in QUANT_STORAGE_DTYPES:
        raise TypeError(f"quant_storage must be one of {QUANT_STORAGE_DTYPES}, got {quant_storage}")
    which = _variant("quantize_4bit", variant, ("rows", "tiles"))
    n = A.numel()
    nbytes = (n + 1) // 2
    if nbytes % quant_storage.itemsize:
        raise ValueError(
            f"{nbytes} packed bytes (numel {n}) do not fill whole {quant_storage} elements; "
            f"use quant_storage=torch.uint8 or a size whose packed bytes divide by {quant_storage.itemsize}"
        )
    blocks = num_blocks(n, blocksize)
    packed = torch.empty(nbytes, dtype=torch.uint8, device=A.device)
    absmax = torch.empty(blocks, dtype=torch.float32, device=A.device)
    if n:
        cfg = TUNING["quantize_4bit"]
        _, bins, tree, order = _fourbit_tables(quant_type, A.device)
        rows_table = _rows4_table(quant_type, A.device) if which == "rows" and bins is not None else None
        flat = A.contiguous().view(-1)
        if rows_table is not None:
            # Full tiles store 8 codes per int32 word and end at or before word n // 8.
            words = packed[: nbytes // 4 * 4].view(torch.int32)
            warps = num_warps or cfg["rows_warps"]
            r, g, w, h = _rows_shape(
                blocksize, 8, per_thread or cfg["rows_per_thread"], warps, cfg["pair"] if pair is None else pair
            )
            with device_guard(A.device):
                _quantize_4bit_rows_kernel[(triton.cdiv(blocks, r),)](
                    flat, rows_table, bins, packed, words, absmax, n, blocks, BS=blocksize, R=r, G=g,
                    W=w, H=h, PTR_BITS=_ptr_bits_ok(), ADDEND=ROWS4_ADDEND, CLAMP=ROWS4_CLAMP, L_SCALE=LUT_SCALE, L_ADDEND=_lut_addend(),
                    L_SIZE=LUT_SIZE, EXACT_BF16=interpreting(), num_warps=warps,
                )  # fmt: skip
        else:
            bpp, warps = _launch_shape("quantize_4bit", blocksize, tile, num_warps)
            use_lut = bins is not None and (cfg["lut"] if lut is None else lut)
            table = bins if use_lut else tree
            use_addr32 = (cfg["addr32"] if addr32 is None else addr32) and _fits_addr32(table) and _ptr_bits_ok()
            with device_guard(A.device):
                _quantize_4bit_kernel[(triton.cdiv(blocks, bpp),)](
                    flat, table, order, packed, absmax, n, blocks, BS=blocksize, BPP=bpp, LUT=use_lut,
                    L_SCALE=LUT_SCALE, L_ADDEND=_lut_addend(), L_SIZE=LUT_SIZE, ADDR32=use_addr32,
                    EXACT_BF16=interpreting(), num_warps=warps,
                )  # fmt: skip
    return packed.view(quant_storage).unsqueeze(1), absmax


def _shape_numel(shape: object) -> tuple[tuple[int, ...], int]:
    if not isinstance(shape, (list, tuple, torch.Size)) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise TypeError(f"shape must be a sequence of non-negative ints, got {shape!r}")
    n = 1
    for s in shape:
        n *= s
    return tuple(shape), n


def _dequantize_4bit_into(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    n: int,
    flat_out: torch.Tensor,
    tile: int | None,
    num_warps: int | None,
) -> None:
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"A must be a torch.Tensor of packed 4-bit codes, got {type(A).__name__}")
    check_device("A", A)
    _check_blocksize(blocksize, BLOCKSIZES_4BIT, "4-bit dequantization")
    _check_quant_type(quant_type)
    blocks = num_blocks(n, blocksize)
    absmax = _check_absmax(absmax, blocks, A.device)
    packed = A.contiguous().view(torch.uint8).reshape(-1) if A.dim() else A.reshape(1).view(torch.uint8)
    if packed.numel() < (n + 1) // 2:
        raise ValueError(f"A holds {packed.numel()} packed bytes, {(n + 1) // 2} are needed for {n} values")
    if n == 0:
        return
    bpp, warps = _launch_shape("dequantize_4bit", blocksize, tile, num_warps)
    table = _fourbit_tables(quant_type, A.device)[0]
    with device_guard(A.device):
        _dequantize_4bit_kernel[(triton.cdiv(blocks, bpp),)](
            packed,
            absmax,
            table,
            flat_out,
            n,
            blocks,
            BS=blocksize,
            BPP=bpp,
            EXACT_BF16=interpreting(),
            num_warps=warps,
        )


@register("dequantize_4bit", "triton", "cuda", available=available)
def dequantize_4bit(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    *,
    tile: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    _check_out_dtype(dtype)
    shape, n = _shape_numel(shape)
    out = torch.empty(shape, dtype=dtype, device=A.device)
    _dequantize_4bit_into(A, absmax, blocksize, quant_type, n, out.view(-1), tile, num_warps)
    return out


@register("dequantize_4bit.out", "triton", "cuda", available=available)
def dequantize_4bit_out(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    out: torch.Tensor,
) -> None:
    _check_out_dtype(dtype)
    shape, n = _shape_numel(shape)
    flat = _write_out(out, shape, dtype, A.device)
    _dequantize_4bit_into(A, absmax, blocksize, quant_type, n, flat, None, None)
    if not out.is_contiguous():
        out.copy_(flat.view(out.shape))
