"""Adagrad (``v += g^2``, ``p -= lr * g / (sqrt(v) + eps)``). ``lr_decay`` and
``initial_accumulator_value`` other than 0 are not supported (they raise ValueError)."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer1State

__all__ = ["Adagrad", "Adagrad8bit", "Adagrad32bit"]


class _AdagradBase(Optimizer1State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if initial_accumulator_value != 0.0:
            raise ValueError("Initial accumulator value != 0.0 not supported!")
        if lr_decay != 0.0:
            raise ValueError("Lr Decay != 0.0 not supported!")
        super().__init__(
            "adagrad",
            params,
            lr,
            (0.0, 0.0),
            eps,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            block_wise,
        )


class Adagrad(_AdagradBase):
    """Adagrad; ``optim_bits=8`` for 8-bit state."""


Adagrad8bit = variant(_AdagradBase, "Adagrad8bit", bits=8)
Adagrad32bit = variant(_AdagradBase, "Adagrad32bit", bits=32)
