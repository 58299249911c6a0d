"""Native C++ fused optimizer updates on the CPU (csrc/optim.cpp)."""

from __future__ import annotations

import ctypes

import torch

from ... import _native
from ..._registry import register
from ...ops.optim import TWO_STATE, check_update_8bit, check_update_32bit, optim_num_blocks
from ..reference.optim import codebook_tables, hyper

_OPT_IDS = {"adam": 0, "lamb": 0, "ademamix": 1, "momentum": 2, "lars": 2, "rmsprop": 3, "adagrad": 4, "lion": 5}


class _Hyper(ctypes.Structure):
    # Keep in sync with BnbOptimHyper in csrc/optim.cpp
    _fields_ = [
        (name, ctypes.c_float)
        for name in (
            "b1", "omb1", "b2", "omb2", "b3", "omb3", "alpha", "eps", "wd", "lr",
            "decay", "ic1", "isc2", "gscale", "max_unorm", "param_norm",
        )
    ] + [("first", ctypes.c_int32), ("skip_zeros", ctypes.c_int32)]  # fmt: skip


_fns: dict[str, object] = {}


def _fn(name: str):
    fn = _fns.get(name)
    if fn is None:
        p, i32, i64 = _native.c_ptr, _native.c_i32, _native.c_i64
        if name == "8bit":
            argtypes = [i32, i32, p, p, p, p, p, p, p, p, p, i32, i32, p, p, p, i64, ctypes.POINTER(_Hyper)]
            fn = _native.function("bnb_optimizer_update_8bit_blockwise", argtypes)
        else:
            argtypes = [i32, i32, p, p, p, p, p, p, i64, ctypes.POINTER(_Hyper)]
            fn = _native.function("bnb_optimizer_update_32bit", argtypes)
        _fns[name] = fn
    return fn


def _hyper_struct(hp, skip_zeros: bool, max_unorm: float = 0.0, param_norm: float = 0.0) -> _Hyper:
    return _Hyper(
        hp.b1, hp.omb1, hp.b2, hp.omb2, hp.b3, hp.omb3, hp.alpha, hp.eps, hp.wd, hp.lr,
        hp.decay, hp.ic1, hp.isc2, hp.gscale, max_unorm, param_norm, int(hp.first), int(skip_zeros),
    )  # fmt: skip


def _contig(name: str, *tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name}: the native CPU kernel needs contiguous tensors")


@register("optimizer_update_32bit", "cpu", "cpu", available=_native.available)
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
    _contig("optimizer_update_32bit", g, p, state1, state2)
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    h = _hyper_struct(hp, skip_zeros, max_unorm if max_unorm > 0 else 0.0, param_norm)
    n = p.numel()
    s3 = state1.view(-1)[n:].data_ptr() if optimizer_name == "ademamix" else None
    s2 = state2.data_ptr() if optimizer_name in TWO_STATE else None
    un = unorm_vec.data_ptr() if (unorm_vec is not None and max_unorm > 0) else None
    code = _fn("32bit")(
        _OPT_IDS[optimizer_name], _native.DTYPE_CODES[p.dtype], g.data_ptr(), p.data_ptr(),
        state1.data_ptr(), s2, s3, un, n, ctypes.byref(h),
    )  # fmt: skip
    _native.check(code, "optimizer_update_32bit")


@register("optimizer_update_8bit_blockwise", "cpu", "cpu", available=_native.available)
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
    _contig("optimizer_update_8bit_blockwise", g, p, state1, state2, absmax1, absmax2)
    hp = hyper(optimizer_name, beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale)
    h = _hyper_struct(hp, skip_zeros)
    n = p.numel()
    nb = optim_num_blocks(n)
    two = optimizer_name in TWO_STATE
    q1 = qmap1.contiguous()
    _, mid1, k1 = codebook_tables(qmap1)
    q2 = mid2 = None
    k2 = 0
    if two:
        q2 = qmap2.contiguous()
        _, mid2, k2 = codebook_tables(qmap2)
    ademamix = optimizer_name == "ademamix"
    c3 = state1.view(-1)[n:].data_ptr() if ademamix else None
    a3 = absmax1.view(-1)[nb:].data_ptr() if ademamix else None
    code = _fn("8bit")(
        _OPT_IDS[optimizer_name], _native.DTYPE_CODES[p.dtype], g.data_ptr(), p.data_ptr(),
        state1.data_ptr(), state2.data_ptr() if two else None, c3,
        q1.data_ptr(), q2.data_ptr() if two else None, mid1.data_ptr(), mid2.data_ptr() if two else None,
        k1, k2, absmax1.data_ptr(), absmax2.data_ptr() if two else None, a3, n, ctypes.byref(h),
    )  # fmt: skip
    _native.check(code, "optimizer_update_8bit_blockwise")
