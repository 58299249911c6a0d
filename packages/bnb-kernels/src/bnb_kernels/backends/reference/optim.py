"""Pure-torch reference of the fused optimizer updates: the specification.

Every backend computes, per element and in float32 (constants rounded to float32 once):

* ``g = grad * gnorm_scale``; for momentum/lars/rmsprop/adagrad ``g += weight_decay * p``
  (coupled weight decay); adam/lamb/ademamix/lion decay the parameter instead
  (``p *= 1 - lr * weight_decay``).
* new states and an update direction ``u``:

  - adam, lamb: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``,
    ``u = (m * ic1) / (sqrt(v) * isc2 + eps)`` with ``ic1 = 1/(1-b1^t)``, ``isc2 = 1/sqrt(1-b2^t)``
  - ademamix: as adam plus ``m2 = b3*m2 + (1-b3)*g``, ``u = (m*ic1 + alpha*m2) / (sqrt(v)*isc2 + eps)``
  - momentum, lars: ``m = g`` at step 1, else ``m = b1*m + g``; ``u = m``
  - rmsprop: ``v = b1*v + (1-b1)*g*g``; ``u = g / (sqrt(v) + eps)``
  - adagrad: ``v = v + g*g``; ``u = g / (sqrt(v) + eps)``
  - lion: ``u = sign(b1*m + (1-b1)*g)``; ``m = b2*m + (1-b2)*g``

* ``p = p * decay - (lr * scale) * u`` where ``scale`` is 1 unless ``max_unorm > 0`` (32-bit
  op only): then ``unorm = sum(u*u)`` is written to ``unorm_vec[0]`` and
  ``scale = max_unorm*param_norm/sqrt(unorm)`` when ``sqrt(unorm) > max_unorm*param_norm``.
* An element is *skipped* (parameter and states keep their old values, ``u = 0``) when its
  gradient, any of its new states or its update direction is not finite, or when ``skip_zeros`` and its gradient is 0.

8-bit states are dequantized as ``qmap[code] * absmax[block]``, updated as above, and
requantized per block of 256: ``absmax = max |s|`` and ``code = #{midpoints m_i < s / absmax}``
(``s * (1/absmax)``; 0 when absmax is 0), where ``m_i = (qmap[i] + qmap[i+1]) / 2`` -- the
nearest codebook entry, ties to the lower one.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch

from ..._registry import register
from ...ops.optim import OPTIM_BLOCKSIZE, TWO_STATE, check_update_8bit, check_update_32bit, optim_num_blocks

__all__ = [
    "QMAP_GENERIC",
    "QMAP_SIGNED_DYNAMIC",
    "QMAP_UNSIGNED_DYNAMIC",
    "Hyper",
    "codebook_tables",
    "dynamic_map",
    "hyper",
    "quantize_state",
    "update_direction",
]

QMAP_GENERIC = 0
QMAP_SIGNED_DYNAMIC = 1
QMAP_UNSIGNED_DYNAMIC = 2

DECOUPLED = ("adam", "lamb", "ademamix", "lion")


def dynamic_map(signed: bool = True) -> torch.Tensor:
    """The 256-entry dynamic (decimal exponent + linear fraction) map of the reference release.

    For each decade ``10**(k-6)`` (k = 0..6) it holds the centres of ``2**k`` (signed, both
    signs) or ``2**(k+1)`` (unsigned) equal slices of [0.1, 1] times the decade, plus 0 and 1.
    """
    values: list[float] = []
    for k in range(7):
        count = 2**k if signed else 2 ** (k + 1)
        edges = torch.linspace(0.1, 1.0, count + 1, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2.0
        scale = 10.0 ** (k - 6)
        values += (scale * centres).tolist()
        if signed:
            values += (-scale * centres).tolist()
    values += [0.0, 1.0]
    values += [0.0] * (256 - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


_STANDARD = {}


def _standard_maps() -> dict[int, torch.Tensor]:
    if not _STANDARD:
        _STANDARD[QMAP_SIGNED_DYNAMIC] = dynamic_map(True)
        _STANDARD[QMAP_UNSIGNED_DYNAMIC] = dynamic_map(False)
    return _STANDARD


@dataclass
class _Tables:
    ref: weakref.ref
    version: int
    mid: torch.Tensor  # 255 midpoints
    mid_ext: torch.Tensor  # 257: -inf, midpoints, +inf
    kind: int


_TABLES: dict[tuple[int, int], _Tables] = {}


def codebook_tables(qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(midpoints[255], padded midpoints[257], kind)`` of a sorted 256-entry codebook.

    ``kind`` says whether ``qmap`` is one of the standard dynamic maps, for which the fast
    kernels estimate the code arithmetically. Cached per tensor (checked once, one host sync).
    """
    key = (id(qmap), qmap.data_ptr())
    hit = _TABLES.get(key)
    if hit is not None and hit.ref() is qmap and hit.version == qmap._version:
        return hit.mid, hit.mid_ext, hit.kind
    q = qmap.detach().reshape(-1).to(torch.float32)
    if q.numel() != 256:
        raise ValueError(f"qmap must have 256 entries, got {q.numel()}")
    qc = q.cpu()
    if not bool((qc[1:] >= qc[:-1]).all()):
        raise ValueError("qmap must be sorted in ascending order")
    kind = QMAP_GENERIC
    for k, m in _standard_maps().items():
        if torch.equal(qc, m):
            kind = k
    mid = (q[:-1] + q[1:]) * 0.5
    inf = torch.full((1,), float("inf"), dtype=torch.float32, device=q.device)
    mid_ext = torch.cat((-inf, mid, inf)).contiguous()
    if len(_TABLES) > 1024:  # optimizers share one codebook per device; this only bounds misuse
        _TABLES.clear()
    _TABLES[key] = _Tables(weakref.ref(qmap), qmap._version, mid.contiguous(), mid_ext, kind)
    return mid.contiguous(), mid_ext, kind


@dataclass(frozen=True)
class Hyper:
    """Scalars of one update, in the form every backend consumes (rounded to fp32 there)."""

    b1: float
    omb1: float
    b2: float
    omb2: float
    b3: float
    omb3: float
    alpha: float
    eps: float
    wd: float
    lr: float
    decay: float
    ic1: float
    isc2: float
    gscale: float
    first: bool


def hyper(name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale) -> Hyper:
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    ic1 = 1.0
    isc2 = 1.0
    if name in TWO_STATE:
        c1 = 1.0 - beta1**step
        c2 = 1.0 - beta2**step
        ic1 = 1.0 / c1 if c1 > 0 else 1.0
        isc2 = 1.0 / math.sqrt(c2) if c2 > 0 else 1.0
    decay = 1.0 - lr * weight_decay if name in DECOUPLED else 1.0
    return Hyper(
        b1=float(beta1),
        omb1=1.0 - beta1,
        b2=float(beta2),
        omb2=1.0 - beta2,
        b3=float(beta3),
        omb3=1.0 - beta3,
        alpha=float(alpha),
        eps=float(eps),
        wd=float(weight_decay),
        lr=float(lr),
        decay=decay,
        ic1=ic1,
        isc2=isc2,
        gscale=float(gnorm_scale),
        first=step == 1,
    )


def _f(x: float) -> float:
    """Round a Python float to float32 (what every backend multiplies with)."""
    return float(torch.tensor(x, dtype=torch.float32))


def update_direction(name, hp: Hyper, g, p, s1, s2, s3, skip_zeros: bool = False):
    """New states, update direction and validity mask (float32 tensors, flat).

    Returns ``(s1, s2, s3, u, valid)`` with skipped elements already holding their old states
    and ``u = 0``.
    """
    b1, omb1, b2, omb2, b3, omb3 = map(_f, (hp.b1, hp.omb1, hp.b2, hp.omb2, hp.b3, hp.omb3))
    eps, wd, ic1, isc2, alpha = map(_f, (hp.eps, hp.wd, hp.ic1, hp.isc2, hp.alpha))
    g0 = g
    g = g * _f(hp.gscale)
    n1 = n2 = n3 = None
    if name in ("momentum", "lars", "rmsprop", "adagrad"):
        g = g + wd * p
    if name in ("adam", "lamb", "ademamix"):
        n1 = s1 * b1 + omb1 * g
        n2 = s2 * b2 + omb2 * (g * g)
        num = n1 * ic1
        if name == "ademamix":
            n3 = s3 * b3 + omb3 * g
            num = num + alpha * n3
        u = num / (torch.sqrt(n2) * isc2 + eps)
    elif name in ("momentum", "lars"):
        n1 = g.clone() if hp.first else s1 * b1 + g
        u = n1
    elif name == "rmsprop":
        n1 = s1 * b1 + omb1 * (g * g)
        u = g / (torch.sqrt(n1) + eps)
    elif name == "adagrad":
        n1 = s1 + g * g
        u = g / (torch.sqrt(n1) + eps)
    elif name == "lion":
        u = torch.sign(s1 * b1 + omb1 * g)
        n1 = s1 * b2 + omb2 * g
    else:
        raise ValueError(f"unknown optimizer_name {name!r}")
    valid = torch.isfinite(g) & torch.isfinite(n1) & torch.isfinite(u)
    if n2 is not None:
        valid &= torch.isfinite(n2)
    if n3 is not None:
        valid &= torch.isfinite(n3)
    if skip_zeros:
        valid &= g0 != 0
    n1 = torch.where(valid, n1, s1)
    n2 = torch.where(valid, n2, s2) if n2 is not None else None
    n3 = torch.where(valid, n3, s3) if n3 is not None else None
    u = torch.where(valid, u, torch.zeros_like(u))
    return n1, n2, n3, u, valid


def _apply(hp: Hyper, p: torch.Tensor, u: torch.Tensor, valid: torch.Tensor, lr_eff) -> torch.Tensor:
    new = p * _f(hp.decay) - lr_eff * u
    return torch.where(valid, new, p)


def _dequant(codes: torch.Tensor, absmax: torch.Tensor, qmap: torch.Tensor, n: int) -> torch.Tensor:
    scale = absmax.to(torch.float32).repeat_interleave(OPTIM_BLOCKSIZE)[:n]
    return qmap.to(torch.float32)[codes.reshape(-1).long()] * scale


def quantize_state(s: torch.Tensor, mid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise (256) requantization of a flat float32 state: ``(codes uint8, absmax)``."""
    n = s.numel()
    blocks = optim_num_blocks(n)
    padded = torch.nn.functional.pad(s, (0, blocks * OPTIM_BLOCKSIZE - n)).view(blocks, OPTIM_BLOCKSIZE)
    absmax = padded.abs().amax(dim=1)
    inv = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    x = (padded * inv.unsqueeze(1)).reshape(-1)[:n]
    codes = torch.searchsorted(mid, x.contiguous(), right=False)
    return codes.to(torch.uint8), absmax


@register("optimizer_update_32bit", "reference", "*")
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
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    n = p.numel()
    with torch.no_grad():
        gf = g.reshape(-1).float()
        pf = p.reshape(-1).float()
        s1v = state1.view(-1)
        s1 = s1v[:n]
        s3 = s1v[n:] if optimizer_name == "ademamix" else None
        s2 = state2.view(-1) if state2 is not None and optimizer_name in TWO_STATE else None
        n1, n2, n3, u, valid = update_direction(optimizer_name, hp, gf, pf, s1, s2, s3, skip_zeros)
        lr_eff = _f(hp.lr)
        if max_unorm > 0.0:
            unorm = (u * u).sum()
            unorm_vec.view(-1)[0] = unorm
            limit = _f(max_unorm) * _f(param_norm)
            norm = torch.sqrt(unorm)
            scale = torch.where(norm > limit, limit / norm, torch.ones_like(norm))
            lr_eff = lr_eff * scale
        newp = _apply(hp, pf, u, valid, lr_eff)
        p.copy_(newp.view(p.shape).to(p.dtype))
        s1.copy_(n1)
        if s3 is not None:
            s3.copy_(n3)
        if s2 is not None:
            s2.copy_(n2)


@register("optimizer_update_8bit_blockwise", "reference", "*")
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
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    n = p.numel()
    nb = optim_num_blocks(n)
    two = optimizer_name in TWO_STATE
    with torch.no_grad():
        gf = g.reshape(-1).float()
        pf = p.reshape(-1).float()
        c1 = state1.view(-1)
        a1 = absmax1.view(-1)
        s1 = _dequant(c1[:n], a1[:nb], qmap1, n)
        s3 = _dequant(c1[n:], a1[nb:], qmap1, n) if optimizer_name == "ademamix" else None
        s2 = _dequant(state2.view(-1), absmax2.view(-1), qmap2, n) if two else None
        n1, n2, n3, u, valid = update_direction(optimizer_name, hp, gf, pf, s1, s2, s3, skip_zeros)
        newp = _apply(hp, pf, u, valid, _f(hp.lr))
        p.copy_(newp.view(p.shape).to(p.dtype))
        mid1 = codebook_tables(qmap1)[0]
        codes, am = quantize_state(n1, mid1)
        c1[:n].copy_(codes)
        a1[:nb].copy_(am)
        if n3 is not None:
            codes, am = quantize_state(n3, mid1)
            c1[n:].copy_(codes)
            a1[nb:].copy_(am)
        if two:
            codes, am = quantize_state(n2, codebook_tables(qmap2)[0])
            state2.view(-1).copy_(codes)
            absmax2.view(-1).copy_(am)
