"""AdEMAMix (Pagliardini et al. 2024): Adam plus a slow EMA of the gradient mixed in with
weight ``alpha``; ``t_alpha``/``t_beta3`` warm alpha and beta3 up over that many steps."""

from __future__ import annotations

from typing import Any

from ._variant import variant
from .optimizer import Optimizer2State

__all__ = ["AdEMAMix", "AdEMAMix8bit", "AdEMAMix32bit", "PagedAdEMAMix", "PagedAdEMAMix8bit", "PagedAdEMAMix32bit"]


class _AdEMAMixBase(Optimizer2State):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 5.0,
        t_alpha: int | None = None,
        t_beta3: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        optim_bits: int = 32,
        min_8bit_size: int = 4096,
        is_paged: bool = False,
    ) -> None:
        if len(tuple(betas)) != 3:
            raise ValueError(f"AdEMAMix needs betas=(beta1, beta2, beta3), got {betas!r}")
        if alpha < 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        for name, t in (("t_alpha", t_alpha), ("t_beta3", t_beta3)):
            if t is not None and (not isinstance(t, int) or t < 0):
                raise ValueError(f"{name} must be None or a non-negative int, got {t!r}")
        super().__init__(
            "ademamix",
            params=params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            optim_bits=optim_bits,
            args=None,
            min_8bit_size=min_8bit_size,
            percentile_clipping=100,
            block_wise=True,
            is_paged=is_paged,
            alpha=alpha,
            t_alpha=t_alpha,
            t_beta3=t_beta3,
        )


class AdEMAMix(_AdEMAMixBase):
    """AdEMAMix; ``optim_bits=8`` for 8-bit state."""


AdEMAMix8bit = variant(_AdEMAMixBase, "AdEMAMix8bit", bits=8, drop=("optim_bits",))
AdEMAMix32bit = variant(_AdEMAMixBase, "AdEMAMix32bit", bits=32, drop=("optim_bits",))
PagedAdEMAMix = variant(_AdEMAMixBase, "PagedAdEMAMix", paged=True, drop=("is_paged",))
PagedAdEMAMix8bit = variant(_AdEMAMixBase, "PagedAdEMAMix8bit", bits=8, paged=True, drop=("optim_bits", "is_paged"))
PagedAdEMAMix32bit = variant(_AdEMAMixBase, "PagedAdEMAMix32bit", bits=32, paged=True, drop=("optim_bits", "is_paged"))
