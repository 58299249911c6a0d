"""``bitsandbytes.functional``: re-exports ``bnb_quant.functional``."""

from bnb_quant.functional import *  # noqa: F403
from bnb_quant.functional import __all__  # noqa: F401
