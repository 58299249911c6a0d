"""The fixed 4-bit codebooks, in code order (code i dequantizes to TABLE[i] * absmax)."""

from __future__ import annotations

import torch

__all__ = ["FP4_VALUES", "NF4_VALUES", "fourbit_table", "fourbit_thresholds"]

# NormalFloat4 (QLoRA): quantiles of N(0, 1) scaled to [-1, 1], with an exact zero.
NF4_VALUES = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

# FP4 (e2m1 without inf/nan, bias chosen by the reference release), scaled by 1/12.
# Bit 3 is the sign; codes 0 and 8 are +0 and -0.
_FP4_MAGNITUDES = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0)
# The reference release stores code 8 as +0.0 (not -0.0); keep its bytes.
FP4_VALUES = tuple(m / 12.0 for m in _FP4_MAGNITUDES) + tuple(-m / 12.0 if m else 0.0 for m in _FP4_MAGNITUDES)

# Decision thresholds of the reference release: a normalized value x gets the code whose
# value is nearest; x exactly on a threshold goes to the lower value.
# NF4: sorted midpoints; code = number of thresholds strictly below x.
NF4_THRESHOLDS = tuple((NF4_VALUES[i] + NF4_VALUES[i + 1]) / 2 for i in range(15))
# FP4 magnitudes in increasing order and the codes that hold them.
FP4_MAGNITUDE_ORDER = (0, 1, 6, 7, 4, 5, 2, 3)
FP4_THRESHOLDS = (0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333)


def fourbit_table(quant_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 float32 values of ``quant_type`` ("nf4" or "fp4"), indexed by code."""
    if quant_type == "nf4":
        values = NF4_VALUES
    elif quant_type == "fp4":
        values = FP4_VALUES
    else:
        raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")
    return torch.tensor(values, dtype=torch.float32, device=device)


def fourbit_thresholds(quant_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    values = NF4_THRESHOLDS if quant_type == "nf4" else FP4_THRESHOLDS
    return torch.tensor(values, dtype=torch.float32, device=device)
