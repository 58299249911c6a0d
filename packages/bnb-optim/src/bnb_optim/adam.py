"""Adam and AdamW with 32-bit, 8-bit (blockwise) and paged state.

As in the reference release, ``weight_decay`` is applied decoupled (``p *= 1 - lr * wd``) for
both Adam and AdamW; ``amsgrad`` is not supported (``amsgrad=True`` raises).
"""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer2State

__all__ = [
    "Adam",
    "Adam8bit",
    "Adam32bit",
    "AdamW",
    "AdamW8bit",
    "AdamW32bit",
    "PagedAdam",
    "PagedAdam8bit",
    "PagedAdam32bit",
    "PagedAdamW",
    "PagedAdamW8bit",
    "PagedAdamW32bit",
]


def _no_amsgrad(amsgrad: bool) -> None:
    if amsgrad:
        raise NotImplementedError("amsgrad=True is not supported by the bitsandbytes Adam optimizers")


class _AdamBase(Optimizer2State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        is_paged: bool = False,
    ) -> None:
        _no_amsgrad(amsgrad)
        super().__init__(
            "adam",
            params,
            lr,
            betas,
            eps,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            percentile_clipping,
            block_wise,
            is_paged=is_paged,
        )


class Adam(_AdamBase):
    """Adam; ``optim_bits=8`` for 8-bit state."""


class _AdamWBase(_AdamBase):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        is_paged: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, optim_bits, args, min_8bit_size, percentile_clipping,
            block_wise, is_paged,
        )  # fmt: skip


class AdamW(_AdamWBase):
    """AdamW (decoupled weight decay, default 1e-2); ``optim_bits=8`` for 8-bit state."""


Adam8bit = variant(_AdamBase, "Adam8bit", bits=8)
Adam32bit = variant(_AdamBase, "Adam32bit", bits=32)
PagedAdam = variant(_AdamBase, "PagedAdam", paged=True)
PagedAdam8bit = variant(_AdamBase, "PagedAdam8bit", bits=8, paged=True)
PagedAdam32bit = variant(_AdamBase, "PagedAdam32bit", bits=32, paged=True)
AdamW8bit = variant(_AdamWBase, "AdamW8bit", bits=8)
AdamW32bit = variant(_AdamWBase, "AdamW32bit", bits=32)
PagedAdamW = variant(_AdamWBase, "PagedAdamW", paged=True)
PagedAdamW8bit = variant(_AdamWBase, "PagedAdamW8bit", bits=8, paged=True)
PagedAdamW32bit = variant(_AdamWBase, "PagedAdamW32bit", bits=32, paged=True)
