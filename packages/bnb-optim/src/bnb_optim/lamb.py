"""LAMB: Adam whose update is clipped to ``max_unorm * ||p||`` (trust ratio).

``bias_correction=False`` and ``adam_w_mode=False`` are not supported (they raise)."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer2State

__all__ = ["LAMB", "LAMB8bit", "LAMB32bit"]


class _LAMBBase(Optimizer2State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        bias_correction: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        adam_w_mode: bool = True,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        max_unorm: float = 1.0,
    ) -> None:
        if amsgrad:
            raise NotImplementedError("amsgrad=True is not supported by LAMB")
        if not bias_correction:
            raise NotImplementedError("LAMB without bias correction is not supported")
        if not adam_w_mode:
            raise NotImplementedError("LAMB with adam_w_mode=False is not supported")
        super().__init__(
            "lamb",
            params,
            lr,
            betas,
            eps,
            weight_decay,
            optim_bits,
            args,
            min_8bit_size,
            max_unorm=max_unorm,
        )


class LAMB(_LAMBBase):
    """LAMB; ``optim_bits=8`` for 8-bit state."""


LAMB8bit = variant(_LAMBBase, "LAMB8bit", bits=8, drop=("optim_bits",))
LAMB32bit = variant(_LAMBBase, "LAMB32bit", bits=32, drop=("optim_bits",))
