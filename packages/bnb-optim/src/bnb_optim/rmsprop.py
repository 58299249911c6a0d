"""RMSprop (``v = alpha * v + (1 - alpha) * g^2``, ``p -= lr * g / (sqrt(v) + eps)``).
``alpha=0``, ``momentum != 0`` and ``centered=True`` are not supported (they raise)."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer1State

__all__ = ["RMSprop", "RMSprop8bit", "RMSprop32bit"]


class _RMSpropBase(Optimizer1State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
    ) -> None:
        if alpha == 0:
            raise NotImplementedError("RMSprop with alpha==0.0 is not supported!")
        if centered:
            raise NotImplementedError("Centered RMSprop is not supported!")
        if momentum != 0:
            raise NotImplementedError("RMSprop with momentum is not supported")
        super().__init__(
            "rmsprop",
            params,
            lr,
            (alpha, momentum),
            eps,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            block_wise,
        )


class RMSprop(_RMSpropBase):
    """RMSprop; ``optim_bits=8`` for 8-bit state."""


RMSprop8bit = variant(_RMSpropBase, "RMSprop8bit", bits=8, drop=("optim_bits",))
RMSprop32bit = variant(_RMSpropBase, "RMSprop32bit", bits=32, drop=("optim_bits",))
