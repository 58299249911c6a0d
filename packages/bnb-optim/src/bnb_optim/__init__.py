"""bnb-optim: 8-bit, 32-bit and paged optimizers.

Drop-in for ``torch.optim``: ``AdamW8bit(model.parameters(), lr=1e-3)`` keeps two bytes of
state per parameter (blockwise 8-bit quantization, 256 values per block) and updates each
parameter in one fused kernel (Triton on CUDA, native C++ on the CPU).
"""

from __future__ import annotations

__version__ = "0.1.0"

from bnb_kernels.compat import require

require("bnb-optim", __version__, {"bnb_kernels": ("0.1", "0.2"), "bnb_quant": ("0.1", "0.2")})

from . import functional  # noqa: E402
from .adagrad import Adagrad, Adagrad8bit, Adagrad32bit  # noqa: E402
from .adam import (  # noqa: E402
    Adam,
    Adam8bit,
    Adam32bit,
    AdamW,
    AdamW8bit,
    AdamW32bit,
    PagedAdam,
    PagedAdam8bit,
    PagedAdam32bit,
    PagedAdamW,
    PagedAdamW8bit,
    PagedAdamW32bit,
)
from .ademamix import (  # noqa: E402
    AdEMAMix,
    AdEMAMix8bit,
    AdEMAMix32bit,
    PagedAdEMAMix,
    PagedAdEMAMix8bit,
    PagedAdEMAMix32bit,
)
from .lamb import LAMB, LAMB8bit, LAMB32bit  # noqa: E402
from .lars import LARS, LARS8bit, LARS32bit, PytorchLARS  # noqa: E402
from .lion import Lion, Lion8bit, Lion32bit, PagedLion, PagedLion8bit, PagedLion32bit  # noqa: E402
from .optimizer import GlobalOptimManager, Optimizer1State, Optimizer2State, Optimizer8bit  # noqa: E402
from .rmsprop import RMSprop, RMSprop8bit, RMSprop32bit  # noqa: E402
from .sgd import SGD, SGD8bit, SGD32bit  # noqa: E402

_OPTIMIZERS = {
    name: obj
    for name, obj in dict(globals()).items()
    if isinstance(obj, type) and issubclass(obj, __import__("torch").optim.Optimizer) and not name.startswith("_")
}


def get_optimizer_class(name: str) -> type:
    """The optimizer class called ``name`` (e.g. ``"AdamW8bit"``, case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a str, got {type(name).__name__}")
    for key, cls in _OPTIMIZERS.items():
        if key.lower() == name.lower() and key not in ("Optimizer8bit", "Optimizer1State", "Optimizer2State"):
            return cls
    known = sorted(k for k in _OPTIMIZERS if k not in ("Optimizer8bit", "Optimizer1State", "Optimizer2State"))
    raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(known)}")


__all__ = [
    "LAMB",
    "LARS",
    "SGD",
    "AdEMAMix",
    "AdEMAMix8bit",
    "AdEMAMix32bit",
    "Adagrad",
    "Adagrad8bit",
    "Adagrad32bit",
    "Adam",
    "Adam8bit",
    "Adam32bit",
    "AdamW",
    "AdamW8bit",
    "AdamW32bit",
    "GlobalOptimManager",
    "LAMB8bit",
    "LAMB32bit",
    "LARS8bit",
    "LARS32bit",
    "Lion",
    "Lion8bit",
    "Lion32bit",
    "Optimizer1State",
    "Optimizer2State",
    "Optimizer8bit",
    "PagedAdEMAMix",
    "PagedAdEMAMix8bit",
    "PagedAdEMAMix32bit",
    "PagedAdam",
    "PagedAdam8bit",
    "PagedAdam32bit",
    "PagedAdamW",
    "PagedAdamW8bit",
    "PagedAdamW32bit",
    "PagedLion",
    "PagedLion8bit",
    "PagedLion32bit",
    "PytorchLARS",
    "RMSprop",
    "RMSprop8bit",
    "RMSprop32bit",
    "SGD8bit",
    "SGD32bit",
    "__version__",
    "functional",
    "get_optimizer_class",
]
