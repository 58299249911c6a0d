"""Lion (Chen et al. 2023): sign of an interpolated momentum, decoupled weight decay."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer1State

__all__ = ["Lion", "Lion8bit", "Lion32bit", "PagedLion", "PagedLion8bit", "PagedLion32bit"]


class _LionBase(Optimizer1State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        is_paged: bool = False,
    ) -> None:
        super().__init__(
            "lion",
            params,
            lr,
            betas,
            0.0,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            block_wise,
            is_paged=is_paged,
        )


class Lion(_LionBase):
    """Lion; ``optim_bits=8`` for 8-bit state."""


Lion8bit = variant(_LionBase, "Lion8bit", bits=8, drop=("optim_bits",))
Lion32bit = variant(_LionBase, "Lion32bit", bits=32, drop=("optim_bits",))
PagedLion = variant(_LionBase, "PagedLion", paged=True, drop=("is_paged",))
PagedLion8bit = variant(_LionBase, "PagedLion8bit", bits=8, paged=True, drop=("optim_bits", "is_paged"))
PagedLion32bit = variant(_LionBase, "PagedLion32bit", bits=32, paged=True, drop=("optim_bits", "is_paged"))
