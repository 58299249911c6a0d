"""bnb-quant: the functional API of bnb (blockwise 8-bit, NF4/FP4 4-bit) and QuantState."""

from __future__ import annotations

__version__ = "0.1.0"

from bnb_kernels.compat import require

require("bnb-quant", __version__, {"bnb_kernels": ("0.1", "0.2")})

from . import functional  # noqa: E402
from .blockwise import dequantize_blockwise, quantize_blockwise  # noqa: E402
from .codebooks import (  # noqa: E402
    create_dynamic_map,
    create_fp8_map,
    create_linear_map,
    create_normal_map,
    get_4bit_type,
)
from .fourbit import (  # noqa: E402
    dequantize_4bit,
    dequantize_fp4,
    dequantize_nf4,
    quantize_4bit,
    quantize_fp4,
    quantize_nf4,
)
from .int8 import (  # noqa: E402
    int8_double_quant,
    int8_linear_matmul,
    int8_mm_dequant,
    int8_vectorwise_dequant,
    int8_vectorwise_quant,
)
from .quant_state import QuantState, QuantStateError  # noqa: E402

__all__ = [
    "QuantState",
    "QuantStateError",
    "__version__",
    "create_dynamic_map",
    "create_fp8_map",
    "create_linear_map",
    "create_normal_map",
    "dequantize_4bit",
    "dequantize_blockwise",
    "dequantize_fp4",
    "dequantize_nf4",
    "functional",
    "get_4bit_type",
    "int8_double_quant",
    "int8_linear_matmul",
    "int8_mm_dequant",
    "int8_vectorwise_dequant",
    "int8_vectorwise_quant",
    "quantize_4bit",
    "quantize_blockwise",
    "quantize_fp4",
    "quantize_nf4",
]
