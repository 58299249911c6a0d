"""Functional optimizer API of the reference release (``bitsandbytes.functional``):
the fused update functions, percentile clipping and paged tensors."""

from __future__ import annotations

import torch

from bnb_kernels.ops.optim import check_optimizer_name

from . import paged

__all__ = [
    "GlobalPageManager",
    "get_paged",
    "optimizer_update_8bit_blockwise",
    "optimizer_update_32bit",
    "percentile_clipping",
    "prefetch_tensor",
]


def optimizer_update_32bit(
    optimizer_name: str,
    g: torch.Tensor,
    p: torch.Tensor,
    state1: torch.Tensor,
    beta1: float,
    eps: float,
    step: int,
    lr: float,
    state2: torch.Tensor | None = None,
    beta2: float = 0.0,
    beta3: float = 0.0,
    alpha: float = 0.0,
    weight_decay: float = 0.0,
    gnorm_scale: float = 1.0,
    unorm_vec: torch.Tensor | None = None,
    max_unorm: float = 0.0,
    skip_zeros: bool = False,
) -> None:
    """One fused 32-bit optimizer step on ``p`` and its float32 states, in place."""
    check_optimizer_name(optimizer_name)
    param_norm = float(p.detach().float().norm().item()) if max_unorm > 0.0 else 0.0
    torch.ops.bitsandbytes.optimizer_update_32bit(
        optimizer_name, g, p, state1, state2, unorm_vec, max_unorm, param_norm,
        beta1, beta2, beta3, alpha, eps, weight_decay, step, lr, gnorm_scale, skip_zeros,
    )  # fmt: skip


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
    weight_decay: float = 0.0,
    gnorm_scale: float = 1.0,
    skip_zeros: bool = False,
) -> None:
    """One fused step with blockwise (256) 8-bit states, in place."""
    check_optimizer_name(optimizer_name)
    torch.ops.bitsandbytes.optimizer_update_8bit_blockwise(
        optimizer_name, g, p, state1, state2, beta1, beta2, beta3, alpha, eps, step, lr,
        qmap1, qmap2, absmax1, absmax2, weight_decay, gnorm_scale, skip_zeros,
    )  # fmt: skip


def percentile_clipping(
    grad: torch.Tensor, gnorm_vec: torch.Tensor, step: int, percentile: int = 5
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Record ``||grad||^2`` in ``gnorm_vec[step % 100]`` and return ``(current norm, clip value,
    scale)``: the scale brings the gradient norm down to the given percentile of the last 100."""
    if not isinstance(gnorm_vec, torch.Tensor) or gnorm_vec.numel() != 100 or gnorm_vec.dtype != torch.float32:
        raise ValueError("gnorm_vec must be a float32 tensor of 100 elements")
    if not isinstance(percentile, int) or not 0 <= percentile < 100:
        raise ValueError(f"percentile must be an int in [0, 100), got {percentile!r}")
    gnorm_vec[step % 100] = grad.detach().float().pow(2).sum()
    current = torch.sqrt(gnorm_vec[step % 100])
    clip = torch.sqrt(torch.sort(gnorm_vec).values[percentile])
    scale = float(torch.where(current > clip, clip / current, torch.ones_like(current)).item())
    return current, clip, scale


def get_paged(
    *shape: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """A zero-filled tensor in CUDA managed memory (ordinary memory, with a warning, without CUDA)."""
    if device is None:
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    t = paged.managed_empty(tuple(int(s) for s in shape), dtype, torch.device(device))
    t.page_deviceid = t.device.index or 0  # type: ignore[attr-defined]
    return t


def prefetch_tensor(A: torch.Tensor, to_cpu: bool = False) -> None:
    """Move a paged tensor to its GPU (or to host memory), asynchronously on the current stream."""
    paged.prefetch(A, to_cpu=to_cpu)


class GlobalPageManager:
    """Process-wide list of paged tensors, prefetched together with :meth:`prefetch_all`."""

    _instance: GlobalPageManager | None = None

    def __init__(self) -> None:
        raise RuntimeError("Call get_instance() instead")

    def initialize(self) -> None:
        self.paged_tensors: list[torch.Tensor] = []

    @classmethod
    def get_instance(cls) -> GlobalPageManager:
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.initialize()
        return cls._instance

    def prefetch_all(self, to_cpu: bool = False) -> None:
        # newest first: the tensors needed soonest are the last ones paged out
        for t in self.paged_tensors[::-1]:
            prefetch_tensor(t, to_cpu)
