"""``bitsandbytes.nn.parametrize``: 4-bit quantization of non-Linear parameters (bnb-nn)."""

from __future__ import annotations

from bnb_nn.parametrize import Bnb4bitParametrization, replace_parameter_4bit, replace_parameter_4bit_prequantized

__all__ = ["Bnb4bitParametrization", "replace_parameter_4bit", "replace_parameter_4bit_prequantized"]
