"""Schemas and fake kernels of the fused optimizer update ops.

Names and schemas are those of the reference release, so code written against
``torch.ops.bitsandbytes.optimizer_update_*`` runs unchanged. Both ops update ``p`` and the
optimizer state in place in one pass over the parameter.

``optimizer_name`` is one of :data:`OPTIMIZERS`. The 8-bit op quantizes its states blockwise
(:data:`OPTIM_BLOCKSIZE` elements per block) with the codebooks ``qmap1``/``qmap2`` (sorted,
256 entries) and one float32 absmax per block. AdEMAMix keeps two first-moment EMAs: its
``state1`` holds ``2 * p.numel()`` elements (shape ``[2, *p.shape]``) and, in 8 bits, its
``absmax1`` has shape ``[2, blocks]``.

Non-finite gradients: an element whose (scaled) gradient is NaN or +-Inf, or whose updated
state would not be finite, is skipped -- its parameter and state entries keep their values --
while every other element and block updates normally. ``skip_zeros=True`` skips elements
whose gradient is exactly zero in the same way.
"""

from __future__ import annotations

import torch

from .._registry import define_op

__all__ = [
    "ONE_STATE",
    "OPTIMIZERS",
    "OPTIM_BLOCKSIZE",
    "TWO_STATE",
    "check_optimizer_name",
    "optim_num_blocks",
]

OPTIM_BLOCKSIZE = 256
TWO_STATE = ("adam", "lamb", "ademamix")
ONE_STATE = ("momentum", "lars", "rmsprop", "adagrad", "lion")
OPTIMIZERS = TWO_STATE + ONE_STATE
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

define_op(
    "optimizer_update_32bit",
    "(str optimizer_name, Tensor(a0!) g, Tensor(a1!) p, Tensor(a2!) state1, Tensor(a3!)? state2, "
    "Tensor(a4!)? unorm_vec, float max_unorm, float param_norm, float beta1, float beta2, float beta3, "
    "float alpha, float eps, float weight_decay, int step, float lr, float gnorm_scale, "
    "bool skip_zeros=False) -> ()",
)
define_op(
    "optimizer_update_8bit_blockwise",
    "(str optimizer_name, Tensor(a0!) g, Tensor(a1!) p, Tensor(a2!) state1, Tensor(a3!)? state2, "
    "float beta1, float beta2, float beta3, float alpha, float eps, int step, float lr, Tensor(a4!) qmap1, "
    "Tensor(a5!)? qmap2, Tensor(a6!) absmax1, Tensor(a7!)? absmax2, float weight_decay, float gnorm_scale, "
    "bool skip_zeros=False) -> ()",
)


def _req(cond: bool, message) -> None:
    """Raise ValueError(message()) unless cond; the message is built only on failure."""
    if not cond:
        raise ValueError(message() if callable(message) else message)


def optim_num_blocks(n: int) -> int:
    return -(n // -OPTIM_BLOCKSIZE)


def check_optimizer_name(name: str) -> None:
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer_name must be one of {OPTIMIZERS}, got {name!r}")


def _check_common(name: str, g: torch.Tensor, p: torch.Tensor, step: int) -> None:
    check_optimizer_name(name)
    _req(
        g.numel() == p.numel(),
        lambda: f"g and p must have the same number of elements, got {g.numel()} and {p.numel()}",
    )
    _req(g.dtype in _FLOAT_DTYPES, lambda: f"g must be bfloat16, float16, or float32, got {g.dtype}")
    _req(
        g.dtype == p.dtype,
        lambda: f"Expected all tensors to have the same dtype, got g.dtype={g.dtype}, p.dtype={p.dtype}",
    )
    _req(g.device == p.device, lambda: f"g and p must be on one device, got {g.device} and {p.device}")
    _req(step >= 1, lambda: f"step must be >= 1, got {step}")


def check_update_32bit(name, g, p, state1, state2, unorm_vec, max_unorm) -> None:
    _check_common(name, g, p, 1)
    n = p.numel()
    k = 2 if name == "ademamix" else 1
    _req(state1.dtype == torch.float32, lambda: f"state1 must be float32, got {state1.dtype}")
    _req(state1.numel() == k * n, lambda: f"state1 must have {k * n} elements, got {state1.numel()}")
    if name in TWO_STATE:
        _req(state2 is not None, lambda: f"{name} needs state2")
        _req(
            state2.dtype == torch.float32 and state2.numel() == n,
            lambda: f"state2 must be float32 with {n} elements, got {state2.dtype} with {state2.numel()}",
        )
    if max_unorm > 0.0:
        _req(unorm_vec is not None, "max_unorm > 0 needs unorm_vec")
        _req(
            unorm_vec.dtype == torch.float32 and unorm_vec.numel() >= 1,
            "unorm_vec must be a float32 tensor with at least one element",
        )


def check_update_8bit(name, g, p, state1, state2, qmap1, qmap2, absmax1, absmax2) -> None:
    _check_common(name, g, p, 1)
    n = p.numel()
    k = 2 if name == "ademamix" else 1
    blocks = optim_num_blocks(n)
    _req(state1.dtype == torch.uint8, lambda: f"state1 must be uint8, got {state1.dtype}")
    _req(state1.numel() == k * n, lambda: f"state1 must have {k * n} elements, got {state1.numel()}")
    _req(
        qmap1.dtype == absmax1.dtype == torch.float32,
        lambda: (
            f"Expected qmap1 and absmax1 to be float32, got qmap1.dtype={qmap1.dtype}, absmax1.dtype={absmax1.dtype}"
        ),
    )
    _req(qmap1.numel() == 256, lambda: f"qmap1 must have 256 entries, got {qmap1.numel()}")
    _req(absmax1.numel() == k * blocks, lambda: f"absmax1 must have {k * blocks} elements, got {absmax1.numel()}")
    if name in TWO_STATE:
        _req(state2 is not None and qmap2 is not None and absmax2 is not None, lambda: f"{name} needs state2")
        _req(state2.dtype == torch.uint8, lambda: f"state2 must be uint8, got {state2.dtype}")
        _req(state2.numel() == n, lambda: f"state2 must have {n} elements, got {state2.numel()}")
        _req(
            qmap2.dtype == absmax2.dtype == torch.float32,
            lambda: f"Expected qmap2 and absmax2 to be float32, got {qmap2.dtype}, {absmax2.dtype}",
        )
        _req(qmap2.numel() == 256, lambda: f"qmap2 must have 256 entries, got {qmap2.numel()}")
        _req(absmax2.numel() == blocks, lambda: f"absmax2 must have {blocks} elements, got {absmax2.numel()}")
    for t in (state1, absmax1, qmap1, state2, absmax2, qmap2):
        if t is not None:
            _req(t.device == p.device, lambda t=t: f"all tensors must be on {p.device}, got {t.device}")


@torch.library.register_fake("bitsandbytes::optimizer_update_32bit")
def _(
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


@torch.library.register_fake("bitsandbytes::optimizer_update_8bit_blockwise")
def _(
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
