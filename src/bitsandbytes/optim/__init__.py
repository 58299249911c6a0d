"""``bitsandbytes.optim``: the optimizers of bnb-optim."""

from __future__ import annotations

from bnb_optim import *  # noqa: F403
from bnb_optim import __all__  # noqa: F401

from . import optimizer as optimizer
