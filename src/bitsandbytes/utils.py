"""``bitsandbytes.utils``: ``replace_linear`` (bnb-nn) and the quant-state packing helpers (bnb-quant)."""

from __future__ import annotations

from bnb_nn import replace_linear
from bnb_quant.functional import pack_dict_to_tensor, unpack_tensor_to_dict

# The ``weight_format`` codes an 8-bit linear layer's state dict carries. Only row-major (0)
# is ever written; the tiled GPU layouts of pre-0.45 releases are named so old checkpoints are
# recognized (and rejected by Linear8bitLt with a clear error).
LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {"row": 0, "col32": 1, "col_turing": 2, "col_ampere": 3}
INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {0: "row", 1: "col32", 2: "col_turing", 3: "col_ampere"}

__all__ = [
    "INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING",
    "LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING",
    "pack_dict_to_tensor",
    "replace_linear",
    "unpack_tensor_to_dict",
]
