"""The flat functional surface, as ``bitsandbytes.functional`` exposes it.

Each family lives in its own module; this module only gathers their public names.
"""

from __future__ import annotations

from .blockwise import dequantize_blockwise, quantize_blockwise
from .codebooks import create_dynamic_map, create_fp8_map, create_linear_map, create_normal_map, get_4bit_type
from .fourbit import dequantize_4bit, dequantize_fp4, dequantize_nf4, quantize_4bit, quantize_fp4, quantize_nf4
from .fourbit_matmul import gemv_4bit
from .int8 import (
    get_colrow_absmax,
    get_row_absmax,
    int8_double_quant,
    int8_linear_matmul,
    int8_mm_dequant,
    int8_vectorwise_dequant,
    int8_vectorwise_quant,
    mm_dequant,
)
from .quant_state import QuantState, pack_dict_to_tensor, unpack_tensor_to_dict

__all__ = [
    "QuantState",
    "create_dynamic_map",
    "create_fp8_map",
    "create_linear_map",
    "create_normal_map",
    "dequantize_4bit",
    "dequantize_blockwise",
    "dequantize_fp4",
    "dequantize_nf4",
    "gemv_4bit",
    "get_4bit_type",
    "get_colrow_absmax",
    "get_row_absmax",
    "int8_double_quant",
    "int8_linear_matmul",
    "int8_mm_dequant",
    "int8_vectorwise_dequant",
    "int8_vectorwise_quant",
    "mm_dequant",
    "pack_dict_to_tensor",
    "quantize_4bit",
    "quantize_blockwise",
    "quantize_fp4",
    "quantize_nf4",
    "unpack_tensor_to_dict",
]
