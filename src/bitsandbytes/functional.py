"""``bitsandbytes.functional``: re-exports ``bnb_quant.functional`` and the optimizer functions
of ``bnb_optim.functional``."""

from bnb_optim.functional import (
    GlobalPageManager,
    get_paged,
    optimizer_update_8bit_blockwise,
    optimizer_update_32bit,
    percentile_clipping,
    prefetch_tensor,
)
from bnb_quant.functional import *  # noqa: F403
from bnb_quant.functional import __all__ as _quant_all

__all__ = [
    *_quant_all,
    "GlobalPageManager",
    "get_paged",
    "optimizer_update_32bit",
    "optimizer_update_8bit_blockwise",
    "percentile_clipping",
    "prefetch_tensor",
]
