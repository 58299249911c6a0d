"""Triton fused optimizer updates (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

One launch per parameter. A program of the 8-bit kernel owns 4 quantization blocks of 256,
one warp each (8 contiguous values per thread, so a block's absmax is a warp reduction): it
reads gradient, parameter and codes, dequantizes through the codebook, updates in registers and
writes parameter, codes and absmax back. Requantization is exact (the reference's
``searchsorted`` on the midpoints) at the cost of one 4-byte table read and one comparison: the
table has an entry per bucket of float32 bit patterns (sign, exponent, leading mantissa bits),
holding the code of the bucket's smallest value and the one midpoint inside it
(:func:`search_table`); codebooks too crowded for that are bisected. The arithmetic is the one
specified in ``backends/reference/optim.py``.

Host side: the first call for a parameter is validated in full and leaves a plan; later calls
with the same parameter and state tensors check only the gradient and launch the compiled kernel
directly (``_common.direct_launch``), which keeps the host well ahead of the GPU.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import os
import weakref
from dataclasses import dataclass

import torch

from ..._registry import register
from ...ops.optim import TWO_STATE, check_update_8bit, check_update_32bit, optim_num_blocks
from ..reference.optim import codebook_tables, hyper
from ._common import (
    available,
    check_device,
    current_stream,
    device_guard,
    direct_launch,
    direct_launch_supported,
    interpreting,
    tl,
    triton,
)

__all__ = ["optimizer_update_8bit_blockwise", "optimizer_update_32bit", "search_table"]

_OPT_IDS = {"adam": 0, "lamb": 0, "ademamix": 1, "momentum": 2, "lars": 2, "rmsprop": 3, "adagrad": 4, "lion": 5}


def _knob(name: str, kind):
    value = os.environ.get(f"BNB_OPTIM8_{name}", "").strip()
    return kind(int(value)) if value else None


# Program layout of the 8-bit kernel; None picks per case (_layout). A tile is BLOCKS_8BIT
# blocks of 256, one warp each (8 values per thread). PREFETCH_8BIT: persistent programs
# (PROGRAMS_PER_SM per SM) that load their next tile while updating the current one.
# BNB_OPTIM8_* set them for tuning.
BLOCKS_8BIT = _knob("BLOCKS", int)
PREFETCH_8BIT = _knob("PREFETCH", bool)
PROGRAMS_PER_SM = _knob("PROGRAMS_PER_SM", int) or 16
MAXNREG_8BIT = _knob("MAXNREG", int) or 0  # 0: the compiler's choice
# decode codes through a shared-memory copy of the codebook (tl.gather); off until timed on a GPU
SMEM_8BIT = bool(_knob("SMEM", int))
BLOCK_32BIT = 2048
# inline PTX (div.approx) on the GPU; the interpreter runs the plain division
_FAST = not interpreting()


@triton.jit
def _finite(x):
    return tl.abs(x) <= 3.4028234663852886e38


@triton.jit
def _div(a, b, FAST: tl.constexpr):
    # the update direction needs no correctly rounded quotient (the reference tests allow a few
    # ulp); div.approx is MUFU.RCP + FMUL where `/` (div.full) also rescales huge/tiny divisors
    if FAST:
        return tl.inline_asm_elementwise(
            "div.approx.f32 $0, $1, $2;", "=r,r,r", [a, b], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return a / b


@triton.jit
def _elem(
    g0, p, s1, s2, s3, b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, ic1, isc2, gscale, first,
    OPT: tl.constexpr, SKIP: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    g = g0 * gscale
    if OPT == 2 or OPT == 3 or OPT == 4:
        g = g + wd * p
    n2 = s2
    n3 = s3
    # `ok` is the reference's test (g, new states and u finite) with the terms that the others
    # imply left out: a NaN/Inf gradient or state reaches u (or n1) through IEEE arithmetic.
    if OPT == 0 or OPT == 1:
        n1 = s1 * b1 + omb1 * g
        n2 = s2 * b2 + omb2 * (g * g)
        num = n1 * ic1
        if OPT == 1:
            n3 = s3 * b3 + omb3 * g
            num = num + alpha * n3
        u = _div(num, tl.sqrt(n2) * isc2 + eps, FAST)
        ok = _finite(u) & _finite(n2)
    elif OPT == 2:
        n1 = tl.where(first != 0, g, s1 * b1 + g)
        u = n1
        ok = _finite(n1)
    elif OPT == 3:
        n1 = s1 * b1 + omb1 * (g * g)
        u = _div(g, tl.sqrt(n1) + eps, FAST)
        ok = _finite(n1) & _finite(u)
    elif OPT == 4:
        n1 = s1 + g * g
        u = _div(g, tl.sqrt(n1) + eps, FAST)
        ok = _finite(n1) & _finite(u)
    else:
        c = s1 * b1 + omb1 * g
        # sign(c): +-1.0 from c's sign bit, 0 for c == 0 (a NaN c has a NaN n1: skipped anyway)
        one = ((c.to(tl.uint32, bitcast=True) & 0x80000000) | 0x3F800000).to(tl.float32, bitcast=True)
        u = tl.where(c == 0.0, 0.0, one)
        n1 = s1 * b2 + omb2 * g
        ok = _finite(n1)
    if SKIP:
        ok = ok & (g0 != 0.0)
    n1 = tl.where(ok, n1, s1)
    n2 = tl.where(ok, n2, s2)
    n3 = tl.where(ok, n3, s3)
    return n1, n2, n3, u, ok


@triton.jit
def _quant_code(x, mid_ptr, KIND: tl.constexpr):
    """Number of midpoints below x (mid_ptr: 257 padded midpoints, -inf first)."""
    if KIND == 0:
        lo = tl.zeros(x.shape, dtype=tl.int32)
        for s in tl.static_range(8):
            step = 128 >> s
            m = tl.load(mid_ptr + lo + step)
            lo = lo + tl.where(m < x, step, 0)
        code = lo
    else:
        ax = tl.abs(x)
        e = (
            (ax >= 1e-6).to(tl.int32)
            + (ax >= 1e-5).to(tl.int32)
            + (ax >= 1e-4).to(tl.int32)
            + (ax >= 1e-3).to(tl.int32)
            + (ax >= 1e-2).to(tl.int32)
            + (ax >= 1e-1).to(tl.int32)
        )
        inv_scale = tl.where(
            e == 6,
            1.0,
            tl.where(
                e == 5,
                10.0,
                tl.where(e == 4, 100.0, tl.where(e == 3, 1000.0, tl.where(e == 2, 1e4, tl.where(e == 1, 1e5, 1e6)))),
            ),
        )
        if KIND == 2:
            cnt = tl.full(x.shape, 2, tl.int32) << e
        else:
            cnt = tl.full(x.shape, 1, tl.int32) << e
        fc = cnt.to(tl.float32)
        # slice position - 0.5 (+1 so truncation floors): the lower of the two codes around x
        v = (ax * inv_scale - 0.1) * (fc * 1.1111111111111112) + 0.5
        v = tl.minimum(tl.maximum(v, 0.0), fc)
        j = v.to(tl.int32) - 1
        if KIND == 2:
            c = tl.where(x < 0.0, 0, cnt - 1 + j)
        else:
            c = tl.where(x >= 0.0, 127 + cnt + j, 126 - cnt - j)
        c = tl.minimum(tl.maximum(c, 0), 254)
        code = c + (x > tl.load(mid_ptr + c + 1)).to(tl.int32)
    return code


@triton.jit
def _table_code(x, t_ptr, SHIFT: tl.constexpr):
    """Code of x from the bucket of its top 32 - SHIFT bits (sign, exponent, leading mantissa
    bits). The bucket's 4-byte entry holds the code of its smallest value (top byte) and the low
    SHIFT bits of the one midpoint inside it (bits the bucket's values share above them; flipped
    for negative buckets, all ones when there is none): comparing the low bits orders x and it."""
    b = x.to(tl.uint32, bitcast=True)
    e = tl.load(t_ptr + (b >> SHIFT)).to(tl.uint32, bitcast=True)
    flip = (x.to(tl.int32, bitcast=True) >> 31).to(tl.uint32, bitcast=True)  # ones for negative x
    low = (b ^ flip) & ((1 << SHIFT) - 1)
    return (e >> 24).to(tl.int32) + (low > (e & 0xFFFFFF)).to(tl.int32)


@triton.jit
def _requant(
    s, mask, rows, rmask, c_ptr, a_ptr, t_ptr, offs, EVEN: tl.constexpr, KIND: tl.constexpr, SHIFT: tl.constexpr
):
    if not EVEN:
        s = tl.where(mask, s, 0.0)
    amax = tl.max(tl.abs(s), axis=1)
    # the correctly rounded 1/absmax of the reference (once per block)
    inv = tl.where(amax > 0.0, tl.math.div_rn(tl.full(amax.shape, 1.0, tl.float32), amax), 0.0)
    x = s * inv[:, None]
    if KIND == 3:
        code = _table_code(x, t_ptr, SHIFT)
    else:
        code = _quant_code(x, t_ptr, KIND)
    if EVEN:
        tl.store(c_ptr + offs, code.to(tl.uint8))
        tl.store(a_ptr + rows, amax)
    else:
        tl.store(c_ptr + offs, code.to(tl.uint8), mask=mask)
        tl.store(a_ptr + rows, amax, mask=rmask)


@triton.jit
def _load_tile(
    t, g_ptr, p_ptr, c1_ptr, c2_ptr, a1_ptr, a2_ptr, n, nb, OPT: tl.constexpr, BLOCKS: tl.constexpr, EVEN: tl.constexpr
):
    """Gradient, parameter, codes and absmax of tile t (BLOCKS blocks), as stored."""
    rows = t * BLOCKS + tl.arange(0, BLOCKS)
    offs = rows[:, None] * 256 + tl.arange(0, 256)[None, :]
    if EVEN:
        g = tl.load(g_ptr + offs)
        p = tl.load(p_ptr + offs)
        c1 = tl.load(c1_ptr + offs)
        a1 = tl.load(a1_ptr + rows)
    else:
        mask = offs < n
        rmask = rows < nb
        g = tl.load(g_ptr + offs, mask=mask, other=0.0)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0)
        c1 = tl.load(c1_ptr + offs, mask=mask, other=0)
        a1 = tl.load(a1_ptr + rows, mask=rmask, other=0.0)
    c2 = c1
    a2 = a1
    c3 = c1
    a3 = a1
    if OPT == 0 or OPT == 1:
        if EVEN:
            c2 = tl.load(c2_ptr + offs)
            a2 = tl.load(a2_ptr + rows)
        else:
            c2 = tl.load(c2_ptr + offs, mask=mask, other=0)
            a2 = tl.load(a2_ptr + rows, mask=rmask, other=0.0)
    if OPT == 1:
        if EVEN:
            c3 = tl.load(c1_ptr + n + offs)
            a3 = tl.load(a1_ptr + nb + rows)
        else:
            c3 = tl.load(c1_ptr + n + offs, mask=mask, other=0)
            a3 = tl.load(a1_ptr + nb + rows, mask=rmask, other=0.0)
    return g, p, c1, a1, c2, a2, c3, a3


@triton.jit
def _decode(codes, q_ptr, BLOCKS: tl.constexpr, SMEM: tl.constexpr):
    """qmap[codes]: a gather from global memory (L1), or with SMEM through a copy of the
    codebook that tl.gather keeps in shared memory (Triton >= 3.2)."""
    if SMEM:
        q = tl.load(q_ptr + tl.arange(0, 256))
        v = tl.gather(q, tl.reshape(codes.to(tl.int32), (BLOCKS * 256,)), 0)
        return tl.reshape(v, (BLOCKS, 256))
    else:
        return tl.load(q_ptr + codes.to(tl.int32))


@triton.jit
def _update_tile(
    t, g, p, c1, a1, c2, a2, c3, a3,
    p_ptr, c1_ptr, c2_ptr, q1_ptr, q2_ptr, t1_ptr, t2_ptr, a1_ptr, a2_ptr, n, nb,
    b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first,
    OPT: tl.constexpr, K1: tl.constexpr, SH1: tl.constexpr, K2: tl.constexpr, SH2: tl.constexpr,
    BLOCKS: tl.constexpr, EVEN: tl.constexpr, SKIP: tl.constexpr, FAST: tl.constexpr, SMEM: tl.constexpr,
):  # fmt: skip
    """Update tile t from its loaded values; write parameter, codes and absmax."""
    rows = t * BLOCKS + tl.arange(0, BLOCKS)
    offs = rows[:, None] * 256 + tl.arange(0, 256)[None, :]
    if EVEN:
        mask = None
        rmask = None
    else:
        mask = offs < n
        rmask = rows < nb
    g = g.to(tl.float32)
    p = p.to(tl.float32)
    s1 = _decode(c1, q1_ptr, BLOCKS, SMEM) * a1[:, None]
    s2 = s1
    s3 = s1
    if OPT == 0 or OPT == 1:
        s2 = _decode(c2, q2_ptr, BLOCKS, SMEM) * a2[:, None]
    if OPT == 1:
        s3 = _decode(c3, q1_ptr, BLOCKS, SMEM) * a3[:, None]
    n1, n2, n3, u, ok = _elem(
        g, p, s1, s2, s3, b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, ic1, isc2, gscale, first, OPT, SKIP, FAST
    )
    newp = tl.where(ok, p * decay - lr * u, p).to(p_ptr.dtype.element_ty)
    if EVEN:
        tl.store(p_ptr + offs, newp)
    else:
        tl.store(p_ptr + offs, newp, mask=mask)
    _requant(n1, mask, rows, rmask, c1_ptr, a1_ptr, t1_ptr, offs, EVEN, K1, SH1)
    if OPT == 0 or OPT == 1:
        _requant(n2, mask, rows, rmask, c2_ptr, a2_ptr, t2_ptr, offs, EVEN, K2, SH2)
    if OPT == 1:
        _requant(n3, mask, rows, rmask, c1_ptr + n, a1_ptr + nb, t1_ptr, offs, EVEN, K1, SH1)


@triton.jit
def _opt8_kernel(
    g_ptr, p_ptr, c1_ptr, c2_ptr, q1_ptr, q2_ptr, t1_ptr, t2_ptr, a1_ptr, a2_ptr, n, nb,
    b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first,
    OPT: tl.constexpr, K1: tl.constexpr, SH1: tl.constexpr, K2: tl.constexpr, SH2: tl.constexpr,
    BLOCKS: tl.constexpr, EVEN: tl.constexpr, I64: tl.constexpr, SKIP: tl.constexpr, FAST: tl.constexpr,
    PREFETCH: tl.constexpr, SMEM: tl.constexpr,
):  # fmt: skip
    # A tile is BLOCKS quantization blocks of 256, one warp each: a block's absmax is a warp
    # reduction (no barrier); EVEN: n is a multiple of BLOCKS * 256 (no masks). PREFETCH: a
    # persistent grid where each program loads its next tile before updating the current one,
    # so a warp keeps memory requests in flight through its gathers and arithmetic.
    pid = tl.program_id(0)
    if PREFETCH:
        nprog = tl.num_programs(0)
        last = tl.cdiv(nb, BLOCKS) - 1
        g, p, c1, a1, c2, a2, c3, a3 = _load_tile(
            pid, g_ptr, p_ptr, c1_ptr, c2_ptr, a1_ptr, a2_ptr, n, nb, OPT, BLOCKS, EVEN
        )
        for t in range(pid, last + 1, nprog):
            # the next tile (the last one again at the end: read, never used)
            gn, pn, c1n, a1n, c2n, a2n, c3n, a3n = _load_tile(
                tl.minimum(t + nprog, last), g_ptr, p_ptr, c1_ptr, c2_ptr, a1_ptr, a2_ptr, n, nb, OPT, BLOCKS, EVEN
            )
            _update_tile(
                t, g, p, c1, a1, c2, a2, c3, a3,
                p_ptr, c1_ptr, c2_ptr, q1_ptr, q2_ptr, t1_ptr, t2_ptr, a1_ptr, a2_ptr, n, nb,
                b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first,
                OPT, K1, SH1, K2, SH2, BLOCKS, EVEN, SKIP, FAST, SMEM,
            )  # fmt: skip
            g, p, c1, a1, c2, a2, c3, a3 = gn, pn, c1n, a1n, c2n, a2n, c3n, a3n
    else:
        if I64:
            pid = pid.to(tl.int64)
        g, p, c1, a1, c2, a2, c3, a3 = _load_tile(
            pid, g_ptr, p_ptr, c1_ptr, c2_ptr, a1_ptr, a2_ptr, n, nb, OPT, BLOCKS, EVEN
        )
        _update_tile(
            pid, g, p, c1, a1, c2, a2, c3, a3,
            p_ptr, c1_ptr, c2_ptr, q1_ptr, q2_ptr, t1_ptr, t2_ptr, a1_ptr, a2_ptr, n, nb,
            b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first,
            OPT, K1, SH1, K2, SH2, BLOCKS, EVEN, SKIP, FAST, SMEM,
        )  # fmt: skip


@triton.jit
def _opt32_kernel(
    g_ptr, p_ptr, s1_ptr, s2_ptr, unorm_ptr, n, max_unorm, param_norm,
    b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first,
    OPT: tl.constexpr, MODE: tl.constexpr, BLOCK: tl.constexpr, SKIP: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    # MODE 0: update; 1: accumulate sum(u*u) into unorm; 2: update scaled by the unorm limit
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s1 = tl.load(s1_ptr + offs, mask=mask, other=0.0)
    s2 = s1
    s3 = s1
    if OPT == 0 or OPT == 1:
        s2 = tl.load(s2_ptr + offs, mask=mask, other=0.0)
    if OPT == 1:
        s3 = tl.load(s1_ptr + n + offs, mask=mask, other=0.0)
    n1, n2, n3, u, ok = _elem(
        g, p, s1, s2, s3, b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, ic1, isc2, gscale, first, OPT, SKIP, FAST
    )
    u = tl.where(ok, u, 0.0)
    if MODE == 1:
        uu = tl.where(mask, u * u, 0.0)
        tl.atomic_add(unorm_ptr, tl.sum(uu, axis=0))
    else:
        lr_eff = lr
        if MODE == 2:
            norm = tl.sqrt(tl.load(unorm_ptr))
            limit = max_unorm * param_norm
            lr_eff = lr * tl.where(norm > limit, limit / norm, 1.0)
        newp = p * decay - lr_eff * u
        tl.store(p_ptr + offs, tl.where(ok, newp, p).to(p_ptr.dtype.element_ty), mask=mask)
        tl.store(s1_ptr + offs, n1, mask=mask)
        if OPT == 0 or OPT == 1:
            tl.store(s2_ptr + offs, n2, mask=mask)
        if OPT == 1:
            tl.store(s1_ptr + n + offs, n3, mask=mask)


# ------------------------------------------------------------------ codebook search tables
_UINT32 = 1 << 32


def _bucket_table(mid: torch.Tensor, shift: int) -> torch.Tensor | None:
    """int32 entries for the 2**(32-shift) buckets of float32 bit patterns (``bits >> shift``),
    or None when some bucket holds more than one midpoint. Entry: ``code(smallest x) << 24 |
    low`` with ``low`` the midpoint's low ``shift`` bits (xor all ones in negative buckets, where
    larger bits mean smaller x; all ones when the bucket holds no midpoint), so that
    ``code(x) = (entry >> 24) + ((bits(x) ^ flip) & mask > entry & 0xFFFFFF)``."""
    mask = (1 << shift) - 1
    lo = torch.arange(1 << (32 - shift), dtype=torch.int64) << shift
    hi = lo + mask

    def as_float(bits: torch.Tensor) -> torch.Tensor:
        return torch.where(bits >= 1 << 31, bits - _UINT32, bits).to(torch.int32).view(torch.float32)

    neg = lo >= 1 << 31
    a, b = as_float(lo), as_float(hi)
    inf = torch.full_like(a, float("inf"))
    signed_inf = torch.where(neg, -inf, inf)  # NaN patterns count with the infinity of their sign
    a = torch.where(torch.isnan(a), signed_inf, a)
    b = torch.where(torch.isnan(b), signed_inf, b)
    xmin = torch.where(neg, b, a).contiguous()
    xmax = torch.where(neg, a, b).contiguous()
    cmin = torch.searchsorted(mid, xmin)
    cmax = torch.searchsorted(mid, xmax)
    if int((cmax - cmin).max()) > 1:
        return None
    m_bits = mid[cmin.clamp(max=mid.numel() - 1)].view(torch.int32).to(torch.int64) & mask
    low = torch.where(neg, m_bits ^ mask, m_bits)
    low = torch.where(cmax > cmin, low, torch.full_like(low, mask))
    entry = (cmin << 24) | low
    return torch.where(entry >= 1 << 31, entry - _UINT32, entry).to(torch.int32)


@dataclass
class _Search:
    ref: weakref.ref
    version: int
    table: torch.Tensor
    kind: int  # 3: bucket table, 0: binary search over the padded midpoints
    shift: int


_SEARCH: dict[tuple[int, int], _Search] = {}
TABLE_SHIFTS = (18, 17, 16)  # 64 KiB .. 256 KiB tables; the smallest that separates the midpoints


def search_table(qmap: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``(table, kind, shift)`` the kernel finds codes of ``qmap`` with (cached per tensor).

    Codebooks whose midpoints are at most one per bucket of ``2**shift`` float32 bit patterns
    (both dynamic maps) get a bucket table: one 4-byte read and one comparison per value, exact
    for every float32. Others fall back to a binary search over the padded midpoints."""
    key = (id(qmap), qmap.data_ptr())
    hit = _SEARCH.get(key)
    if hit is not None and hit.ref() is qmap and hit.version == qmap._version:
        return hit.table, hit.kind, hit.shift
    mid, mid_ext, _ = codebook_tables(qmap)
    table, kind, shift = mid_ext, 0, 0
    mid_cpu = mid.cpu()
    for sh in TABLE_SHIFTS:
        t = _bucket_table(mid_cpu, sh)
        if t is not None:
            table, kind, shift = t.to(qmap.device), 3, sh
            break
    if len(_SEARCH) > 64:
        _SEARCH.clear()
    _SEARCH[key] = _Search(weakref.ref(qmap), qmap._version, table, kind, shift)
    return table, kind, shift


# ------------------------------------------------------------------ host side
_HYPER: dict[tuple, tuple] = {}


def _scalars(name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale) -> tuple:
    """The kernels' float arguments after ``lr`` (``hyper()``; the parameters of one step share
    them, so the last few are cached)."""
    key = (name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    sc = _HYPER.get(key)
    if sc is None:
        hp = hyper(name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
        sc = (
            hp.b1, hp.omb1, hp.b2, hp.omb2, hp.b3, hp.omb3, hp.alpha, hp.eps, hp.wd, hp.lr,
            hp.decay, hp.ic1, hp.isc2, hp.gscale, 1.0 if hp.first else 0.0,
        )  # fmt: skip
        if len(_HYPER) > 32:
            _HYPER.clear()
        _HYPER[key] = sc
    return sc


def _check_tensors(name: str, p: torch.Tensor, *tensors: torch.Tensor | None) -> None:
    check_device(f"{name}: p", p)
    for t in tensors:
        if t is not None:
            check_device(name, t, p.device)
            if not t.is_contiguous():
                raise ValueError(f"{name}: the Triton kernel needs contiguous tensors")


class _Plan:
    """A launch validated once for one parameter and its state tensors: later calls with the
    same tensors (same objects, storage, codebook versions) check only the gradient, then
    launch the compiled kernel directly."""

    __slots__ = ("aux", "ck", "consts", "extra", "g_al", "g_device", "g_dtype", "grid", "n", "ptrs", "refs", "versions")

    def __init__(self, tensors, versions, extra, g, n, grid, consts):
        self.refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        self.ptrs = tuple(0 if t is None else t.data_ptr() for t in tensors)
        self.versions = versions
        self.extra = extra
        self.g_dtype = g.dtype
        self.g_device = g.device
        self.n = n
        self.g_al = g.data_ptr() % 16 == 0
        self.ck = None
        self.grid = grid
        self.consts = consts
        self.aux = None

    def matches(self, tensors, versions, extra, g) -> bool:
        if extra != self.extra or versions != self.versions:
            return False
        for r, t in zip(self.refs, tensors):
            if (r() if r is not None else None) is not t:
                return False
        if tuple(0 if t is None else t.data_ptr() for t in tensors) != self.ptrs:
            return False
        return (
            tensors[0].is_contiguous()
            and g.dtype == self.g_dtype
            and g.device == self.g_device
            and g.numel() == self.n
            and g.is_contiguous()
            and (g.data_ptr() % 16 == 0) == self.g_al
        )


_PLANS: dict[tuple[str, int], _Plan] = {}
_DIRECT = direct_launch_supported()


def _remember(key: tuple[str, int], plan: _Plan) -> None:
    if len(_PLANS) > 4096:  # plans of dead parameters; only bounds the dict
        _PLANS.clear()
    _PLANS[key] = plan


def _launch(plan: _Plan | None, kernel, grid: tuple, args: tuple, device: torch.device) -> None:
    """Launch ``kernel`` with ``args`` (the non-constexpr arguments); through the compiled
    kernel directly when ``plan`` has one."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):
            _launch(plan, kernel, grid, args, device)
        return
    if plan is not None and plan.ck is not None:
        direct_launch(
            plan.ck, grid, current_stream(device.index if device.index is not None else 0), args + plan.consts[1]
        )
        return
    ck = kernel[grid](*args, **plan.consts[0]) if plan is not None else None
    if plan is not None and _DIRECT and device.type == "cuda" and ck is not None:
        plan.ck = ck


def _layout(name: str, itemsize: int) -> tuple[bool, int]:
    """(persistent prefetching programs, blocks per tile). H100, 4096x14336 (kernel ms, limit):
    AdamW bf16 one tile per program 0.279 (prefetching 0.316, 0.20), Lion bf16 0.175 (0.211,
    0.16); with many live registers prefetching wins: AdEMAMix fp32 0.486 (0.540, 0.35), AdamW
    fp32 0.365 (0.377, 0.31)."""
    prefetch = PREFETCH_8BIT
    if prefetch is None:
        prefetch = name == "ademamix" or (name in TWO_STATE and itemsize == 4)
    return prefetch, BLOCKS_8BIT or (2 if prefetch else 4)


_SMS: dict[torch.device, int] = {}


def _programs(device: torch.device) -> int:
    """Programs of a persistent launch: a few per SM (2 under the interpreter, so that the
    tests run programs over several tiles)."""
    if device.type != "cuda":
        return 2
    sms = _SMS.get(device)
    if sms is None:
        sms = _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return sms * PROGRAMS_PER_SM


@register("optimizer_update_32bit", "triton", "cuda", available=available)
def optimizer_update_32bit(
    optimizer_name: str,
    g: torch.Tensor,
    p: torch.Tensor,
    state1: torch.Tensor,
    state2: torch.Tensor | None,
    unorm_vec: torch.Tensor | None,
    max_unorm: float,
    param_norm: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    step: int,
    lr: float,
    gnorm_scale: float,
    skip_zeros: bool = False,
) -> None:
    tensors = (p, state1, state2 if optimizer_name in TWO_STATE else None)
    extra = (optimizer_name, bool(skip_zeros))
    key = ("32", id(p))
    plan = _PLANS.get(key)
    if plan is None or max_unorm > 0.0 or step < 1 or not plan.matches(tensors, (), extra, g):
        check_update_32bit(optimizer_name, g, p, state1, state2, unorm_vec, max_unorm)
        _check_tensors("optimizer_update_32bit", p, g, p, state1, state2)
        hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)  # validates
        plan = None
    n = p.numel()
    if n == 0:
        return
    sc = _scalars(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    opt = _OPT_IDS[optimizer_name]
    s2 = state2 if optimizer_name in TWO_STATE else state1
    grid = (triton.cdiv(n, BLOCK_32BIT),)
    kw = dict(OPT=opt, BLOCK=BLOCK_32BIT, SKIP=bool(skip_zeros), FAST=_FAST, num_warps=8)
    if max_unorm > 0.0:
        with device_guard(p.device):
            unorm_vec.zero_()
            _opt32_kernel[grid](g, p, state1, s2, unorm_vec, n, float(max_unorm), float(param_norm), *sc, MODE=1, **kw)
            _opt32_kernel[grid](g, p, state1, s2, unorm_vec, n, float(max_unorm), float(param_norm), *sc, MODE=2, **kw)
        return
    if plan is None:
        consts = dict(kw, MODE=0)
        names = [a for a in _opt32_kernel.arg_names if a in consts]
        plan = _Plan(tensors, (), extra, g, n, grid, (consts, tuple(consts[a] for a in names)))
        _remember(key, plan)
    _launch(plan, _opt32_kernel, grid, (g, p, state1, s2, state1, n, 0.0, 0.0, *sc), p.device)


@register("optimizer_update_8bit_blockwise", "triton", "cuda", available=available)
def optimizer_update_8bit_blockwise(
    optimizer_name: str,
    g: torch.Tensor,
    p: torch.Tensor,
    state1: torch.Tensor,
    state2: torch.Tensor | None,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    eps: float,
    step: int,
    lr: float,
    qmap1: torch.Tensor,
    qmap2: torch.Tensor | None,
    absmax1: torch.Tensor,
    absmax2: torch.Tensor | None,
    weight_decay: float,
    gnorm_scale: float,
    skip_zeros: bool = False,
) -> None:
    two = optimizer_name in TWO_STATE
    tensors = (p, state1, absmax1, qmap1) + ((state2, absmax2, qmap2) if two else (None, None, None))
    versions = (qmap1._version, qmap2._version if two else 0)
    extra = (optimizer_name, bool(skip_zeros))
    key = ("8", id(p))
    plan = _PLANS.get(key)
    if plan is None or step < 1 or not plan.matches(tensors, versions, extra, g):
        check_update_8bit(optimizer_name, g, p, state1, state2, qmap1, qmap2, absmax1, absmax2)
        _check_tensors("optimizer_update_8bit_blockwise", p, g, p, state1, absmax1, *((state2, absmax2) if two else ()))
        hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)  # validates
        plan = None
    n = p.numel()
    if n == 0:
        return
    sc = _scalars(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    if plan is None:
        nb = optim_num_blocks(n)
        t1, k1, sh1 = search_table(qmap1)
        t2, k2, sh2 = search_table(qmap2) if two else (t1, 0, 0)
        prefetch, blocks = _layout(optimizer_name, p.element_size())
        tiles = triton.cdiv(nb, blocks)
        i64 = (2 * n + blocks * 256) >= 2**31
        prefetch = prefetch and not i64
        grid = (min(tiles, _programs(p.device)) if prefetch else tiles,)
        consts = dict(
            OPT=_OPT_IDS[optimizer_name], K1=k1, SH1=sh1, K2=k2, SH2=sh2, BLOCKS=blocks,
            EVEN=n % (blocks * 256) == 0, I64=i64, SKIP=bool(skip_zeros), FAST=_FAST,
            PREFETCH=prefetch, SMEM=SMEM_8BIT and hasattr(tl, "gather"), num_warps=blocks,
        )  # fmt: skip
        if MAXNREG_8BIT and not interpreting():
            consts["maxnreg"] = MAXNREG_8BIT
        names = [a for a in _opt8_kernel.arg_names if a in consts]
        plan = _Plan(tensors, versions, extra, g, n, grid, (consts, tuple(consts[a] for a in names)))
        # codebooks (contiguous) and search tables: small, shared by every parameter of a device
        plan.aux = (nb, qmap1.contiguous(), (qmap2 if two else qmap1).contiguous(), t1, t2)
        _remember(key, plan)
    nb, q1, q2, t1, t2 = plan.aux
    c2, a2 = (state2, absmax2) if two else (state1, absmax1)
    args = (g, p, state1, c2, q1, q2, t1, t2, absmax1, a2, n, nb, *sc)
    _launch(plan, _opt8_kernel, plan.grid, args, p.device)
