"""SGD with momentum (heavy ball: ``m = momentum * m + g``, ``p -= lr * m``; coupled weight
decay). ``momentum=0`` and ``nesterov=True`` are not supported (they raise); ``dampening`` is
accepted and ignored, as in the reference release."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer1State

__all__ = ["SGD", "SGD8bit", "SGD32bit"]


class _SGDBase(Optimizer1State):
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
        block_wise: bool = True,
    ) -> None:
        if momentum == 0:
            raise NotImplementedError("SGD without momentum is not supported!")
        if nesterov:
            raise NotImplementedError("Nesterov momentum is not supported")
        super().__init__(
            "momentum",
            params,
            lr,
            (momentum, dampening),
            0.0,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            block_wise,
        )


class SGD(_SGDBase):
    """SGD with momentum; ``optim_bits=8`` for 8-bit state."""


SGD8bit = variant(_SGDBase, "SGD8bit", bits=8, drop=("optim_bits",))
SGD32bit = variant(_SGDBase, "SGD32bit", bits=32, drop=("optim_bits",))
