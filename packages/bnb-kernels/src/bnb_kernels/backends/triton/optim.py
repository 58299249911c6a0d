"""Triton fused optimizer updates (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

One launch per parameter: each program reads a tile of gradient, parameter and states
(8-bit codes + one absmax per block of 256), updates them in registers and writes them back,
requantizing the 8-bit states in the same pass. For the standard dynamic codebooks the 8-bit
code is estimated arithmetically (decade + linear position) and settled exactly with one
midpoint comparison, so a requantization costs one table read instead of a binary search.
The arithmetic is the one specified in ``backends/reference/optim.py``.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import torch

from ..._registry import register
from ...ops.optim import TWO_STATE, check_update_8bit, check_update_32bit, optim_num_blocks
from ..reference.optim import codebook_tables, hyper
from ._common import available, check_device, device_guard, tl, triton

__all__ = ["optimizer_update_8bit_blockwise", "optimizer_update_32bit"]

_OPT_IDS = {"adam": 0, "lamb": 0, "ademamix": 1, "momentum": 2, "lars": 2, "rmsprop": 3, "adagrad": 4, "lion": 5}
ROWS_8BIT = 2  # blocks of 256 per program: 4 values per thread keeps registers < 64 (occupancy)
BLOCK_32BIT = 2048


@triton.jit
def _finite(x):
    return tl.abs(x) <= 3.4028234663852886e38


@triton.jit
def _elem(
    g0,
    p,
    s1,
    s2,
    s3,
    b1,
    omb1,
    b2,
    omb2,
    b3,
    omb3,
    alpha,
    eps,
    wd,
    ic1,
    isc2,
    gscale,
    first,
    skip_zeros,
    OPT: tl.constexpr,
):
    g = g0 * gscale
    if OPT == 2 or OPT == 3 or OPT == 4:
        g = g + wd * p
    n2 = s2
    n3 = s3
    if OPT == 0 or OPT == 1:
        n1 = s1 * b1 + omb1 * g
        n2 = s2 * b2 + omb2 * (g * g)
        num = n1 * ic1
        if OPT == 1:
            n3 = s3 * b3 + omb3 * g
            num = num + alpha * n3
        u = num / (tl.sqrt(n2) * isc2 + eps)
    elif OPT == 2:
        n1 = tl.where(first != 0, g, s1 * b1 + g)
        u = n1
    elif OPT == 3:
        n1 = s1 * b1 + omb1 * (g * g)
        u = g / (tl.sqrt(n1) + eps)
    elif OPT == 4:
        n1 = s1 + g * g
        u = g / (tl.sqrt(n1) + eps)
    else:
        c = s1 * b1 + omb1 * g
        u = tl.where(c > 0.0, 1.0, tl.where(c < 0.0, -1.0, 0.0))
        n1 = s1 * b2 + omb2 * g
    ok = _finite(g) & _finite(n1) & _finite(u)
    if OPT == 0 or OPT == 1:
        ok = ok & _finite(n2)
    if OPT == 1:
        ok = ok & _finite(n3)
    ok = ok & ((skip_zeros == 0) | (g0 != 0.0))
    n1 = tl.where(ok, n1, s1)
    n2 = tl.where(ok, n2, s2)
    n3 = tl.where(ok, n3, s3)
    u = tl.where(ok, u, 0.0)
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
def _requant(s, mask, rows, rmask, c_ptr, a_ptr, mid_ptr, offs, KIND: tl.constexpr):
    s = tl.where(mask, s, 0.0)
    amax = tl.max(tl.abs(s), axis=1)
    inv = tl.where(amax > 0.0, 1.0 / tl.where(amax > 0.0, amax, 1.0), 0.0)
    code = _quant_code(s * inv[:, None], mid_ptr, KIND)
    tl.store(c_ptr + offs, code.to(tl.uint8), mask=mask)
    tl.store(a_ptr + rows, amax, mask=rmask)


@triton.jit
def _opt8_kernel(
    g_ptr, p_ptr, c1_ptr, c2_ptr, q1_ptr, q2_ptr, m1_ptr, m2_ptr, a1_ptr, a2_ptr, n, nb,
    b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first, skip_zeros,
    OPT: tl.constexpr, K1: tl.constexpr, K2: tl.constexpr, ROWS: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, 256)
    offs = rows[:, None] * 256 + cols[None, :]
    mask = offs < n
    rmask = rows < nb
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    am1 = tl.load(a1_ptr + rows, mask=rmask, other=0.0)
    s1 = tl.load(q1_ptr + tl.load(c1_ptr + offs, mask=mask, other=0).to(tl.int32)) * am1[:, None]
    s2 = s1
    s3 = s1
    if OPT == 0 or OPT == 1:
        am2 = tl.load(a2_ptr + rows, mask=rmask, other=0.0)
        s2 = tl.load(q2_ptr + tl.load(c2_ptr + offs, mask=mask, other=0).to(tl.int32)) * am2[:, None]
    if OPT == 1:
        am3 = tl.load(a1_ptr + nb + rows, mask=rmask, other=0.0)
        s3 = tl.load(q1_ptr + tl.load(c1_ptr + n + offs, mask=mask, other=0).to(tl.int32)) * am3[:, None]
    n1, n2, n3, u, ok = _elem(
        g, p, s1, s2, s3, b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, ic1, isc2, gscale, first, skip_zeros, OPT
    )
    newp = p * decay - lr * u
    tl.store(p_ptr + offs, tl.where(ok, newp, p).to(p_ptr.dtype.element_ty), mask=mask)
    _requant(n1, mask, rows, rmask, c1_ptr, a1_ptr, m1_ptr, offs, K1)
    if OPT == 0 or OPT == 1:
        _requant(n2, mask, rows, rmask, c2_ptr, a2_ptr, m2_ptr, offs, K2)
    if OPT == 1:
        _requant(n3, mask, rows, rmask, c1_ptr + n, a1_ptr + nb, m1_ptr, offs, K1)


@triton.jit
def _opt32_kernel(
    g_ptr, p_ptr, s1_ptr, s2_ptr, unorm_ptr, n, max_unorm, param_norm,
    b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, first, skip_zeros,
    OPT: tl.constexpr, MODE: tl.constexpr, BLOCK: tl.constexpr,
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
        g, p, s1, s2, s3, b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, ic1, isc2, gscale, first, skip_zeros, OPT
    )
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


def _scalars(hp, skip_zeros: bool) -> tuple:
    return (
        hp.b1, hp.omb1, hp.b2, hp.omb2, hp.b3, hp.omb3, hp.alpha, hp.eps, hp.wd, hp.lr,
        hp.decay, hp.ic1, hp.isc2, hp.gscale, int(hp.first), int(skip_zeros),
    )  # fmt: skip


def _check_tensors(name: str, p: torch.Tensor, *tensors: torch.Tensor | None) -> None:
    check_device(f"{name}: p", p)
    for t in tensors:
        if t is not None:
            check_device(name, t, p.device)
            if not t.is_contiguous():
                raise ValueError(f"{name}: the Triton kernel needs contiguous tensors")


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
    check_update_32bit(optimizer_name, g, p, state1, state2, unorm_vec, max_unorm)
    _check_tensors("optimizer_update_32bit", p, g, p, state1, state2)
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    n = p.numel()
    if n == 0:
        return
    opt = _OPT_IDS[optimizer_name]
    s2 = state2 if optimizer_name in TWO_STATE else state1
    sc = _scalars(hp, skip_zeros)
    grid = (triton.cdiv(n, BLOCK_32BIT),)
    with device_guard(p.device):
        if max_unorm > 0.0:
            unorm_vec.zero_()
            _opt32_kernel[grid](
                g, p, state1, s2, unorm_vec, n, float(max_unorm), float(param_norm), *sc,
                OPT=opt, MODE=1, BLOCK=BLOCK_32BIT, num_warps=8,
            )  # fmt: skip
            mode = 2
        else:
            mode = 0
        un = unorm_vec if unorm_vec is not None else state1
        _opt32_kernel[grid](
            g, p, state1, s2, un, n, float(max_unorm), float(param_norm), *sc,
            OPT=opt, MODE=mode, BLOCK=BLOCK_32BIT, num_warps=8,
        )  # fmt: skip


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
    check_update_8bit(optimizer_name, g, p, state1, state2, qmap1, qmap2, absmax1, absmax2)
    two = optimizer_name in TWO_STATE
    _check_tensors("optimizer_update_8bit_blockwise", p, g, p, state1, absmax1, *((state2, absmax2) if two else ()))
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    n = p.numel()
    if n == 0:
        return
    nb = optim_num_blocks(n)
    _, mid1, k1 = codebook_tables(qmap1)
    q1 = qmap1.contiguous()
    if two:
        _, mid2, k2 = codebook_tables(qmap2)
        q2, c2, a2 = qmap2.contiguous(), state2, absmax2
    else:
        mid2, k2, q2, c2, a2 = mid1, 0, q1, state1, absmax1
    grid = (triton.cdiv(nb, ROWS_8BIT),)
    with device_guard(p.device):
        _opt8_kernel[grid](
            g, p, state1, c2, q1, q2, mid1, mid2, absmax1, a2, n, nb, *_scalars(hp, skip_zeros),
            OPT=_OPT_IDS[optimizer_name], K1=k1, K2=k2, ROWS=ROWS_8BIT, num_warps=4,
        )  # fmt: skip
