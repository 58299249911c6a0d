"""LARS: SGD with momentum whose update is clipped to ``max_unorm * ||p||`` (layer-wise trust
ratio), and ``PytorchLARS``, a plain-torch version of the same rule."""

from __future__ import annotations

from typing import Any

import torch

from ._variant import variant
from .optimizer import Optimizer1State

__all__ = ["LARS", "LARS8bit", "LARS32bit", "PytorchLARS"]


class _LARSBase(Optimizer1State):
    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        max_unorm: float = 0.02,
    ) -> None:
        if momentum == 0:
            raise NotImplementedError("LARS without momentum is not supported!")
        if nesterov:
            raise NotImplementedError("LARS with Nesterov momentum is not supported")
        super().__init__(
            "lars",
            params,
            lr,
            (momentum, dampening),
            0.0,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            max_unorm=max_unorm,
            block_wise=False,
        )


class LARS(_LARSBase):
    """LARS; ``optim_bits=8`` for 8-bit state."""


LARS8bit = variant(_LARSBase, "LARS8bit", bits=8, drop=("optim_bits",))
LARS32bit = variant(_LARSBase, "LARS32bit", bits=32, drop=("optim_bits",))


class PytorchLARS(torch.optim.Optimizer):
    """LARS in plain torch ops (SGD momentum with dampening/Nesterov, update norm clipped to
    ``max_unorm * ||p||``)."""

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        max_unorm: float = 0.02,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            max_unorm=max_unorm,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, momentum, dampening = group["weight_decay"], group["momentum"], group["dampening"]
            nesterov, max_unorm, lr = group["nesterov"], group["max_unorm"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("PytorchLARS does not support sparse gradients")
                d_p = p.grad
                if wd != 0:
                    d_p = d_p.add(p, alpha=wd)
                update = d_p
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = torch.clone(d_p).detach()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
                    update = d_p + buf * momentum if nesterov else buf
                scale = 1.0
                if max_unorm > 0.0:
                    pnorm = torch.norm(p.detach().float())
                    unorm = torch.norm(update.float())
                    scale = torch.where(unorm > max_unorm * pnorm, max_unorm * pnorm / unorm, torch.ones_like(unorm))
                p.add_(update * scale, alpha=-lr)
        return loss
