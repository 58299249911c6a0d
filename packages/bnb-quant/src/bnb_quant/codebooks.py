"""Quantization codebooks (maps from an 8-bit or 4-bit code to a value in [-1, 1]).

The values equal the reference release's, element for element, so codes written by it
decode the same here.
"""

from __future__ import annotations

import itertools

import torch

from bnb_kernels.codebooks import FP4_VALUES, NF4_VALUES

__all__ = ["create_dynamic_map", "create_fp8_map", "create_linear_map", "create_normal_map", "get_4bit_type"]

_INT4_VALUES = tuple(v / 7.0 for v in (7, 6, 5, 4, 3, 2, 1, 0, 0, -1, -2, -3, -4, -5, -6, -7))
_FOURBIT = {"nf4": NF4_VALUES, "fp4": FP4_VALUES, "int4": _INT4_VALUES}


def get_4bit_type(typename: str, device: torch.device | str | None = None, blocksize: int = 64) -> torch.Tensor:
    """The 16 values of a 4-bit type ("nf4", "fp4" or "int4"), indexed by code."""
    if typename not in _FOURBIT:
        raise ValueError(f"typename must be one of {sorted(_FOURBIT)}, got {typename!r}")
    return torch.tensor(_FOURBIT[typename], dtype=torch.float32, device=device)


def _scaled_midpoints(scale: float, count: int) -> list[float]:
    # float32 arithmetic throughout, as the reference release computes it
    edges = torch.linspace(0.1, 1.0, count + 1, dtype=torch.float32)
    return (scale * ((edges[:-1] + edges[1:]) / 2.0)).tolist()


def create_dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """Dynamic tree quantization map: for each decimal exponent 10^-k (k < max_exponent_bits),
    a linear fraction grid whose resolution doubles with the exponent; sorted, 256 entries."""
    if not 1 <= max_exponent_bits < total_bits <= 8:
        raise ValueError(f"need 1 <= max_exponent_bits < total_bits <= 8, got {max_exponent_bits}, {total_bits}")
    # The reference release keeps one bit for the sign even when unsigned (the extra range
    # goes to a doubled fraction grid below), so both variants hold 256 values.
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    values: list[float] = []
    exponent = 0
    for exponent in range(max_exponent_bits):
        shift = exponent + non_sign_bits - max_exponent_bits
        count = 2**shift if signed else 2 ** (shift + 1)
        scale = 10 ** (exponent - (max_exponent_bits - 1))
        values += _scaled_midpoints(scale, count)
        if signed:
            values += _scaled_midpoints(-scale, count)
    if additional_items > 0:
        scale = 10 ** (exponent - (max_exponent_bits - 1))
        values += _scaled_midpoints(scale, additional_items)
        if signed:
            values += _scaled_midpoints(-scale, additional_items)
    values += [0.0, 1.0]
    values += [0.0] * (2**8 - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


def create_normal_map(offset: float = 0.9677083, use_extra_value: bool = True) -> torch.Tensor:
    """256-entry map holding the NormalFloat quantiles (15 or 14 non-zero values) and zeros."""
    positive_count = 8 if use_extra_value else 7
    ndtri = torch.special.ndtri
    pos = ndtri(torch.linspace(offset, 0.5, positive_count + 1, dtype=torch.float32)[:-1].double()).tolist()
    neg = (-ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float32)[:-1].double())).tolist()
    values = torch.tensor(pos + [0.0] * (256 - len(pos) - len(neg)) + neg, dtype=torch.float32)
    values = values.sort().values
    return values / values.max()


def create_fp8_map(
    signed: bool = True, exponent_bits: int = 5, precision_bits: int = 2, total_bits: int = 8
) -> torch.Tensor:
    """All values of a small float format (no inf/NaN), normalized to a maximum of 1."""
    if exponent_bits + precision_bits != total_bits - (1 if signed else 0):
        raise ValueError(
            f"exponent_bits + precision_bits must equal total_bits{' - 1' if signed else ''}, "
            f"got {exponent_bits} + {precision_bits} for total_bits={total_bits}"
        )
    bias = 2 ** (exponent_bits - 1)
    values: list[float] = []
    for biased_exponent in range(2**exponent_bits):
        for mantissa in itertools.product((0, 1), repeat=precision_bits):
            value = 0.0 if biased_exponent == 0 else 1.0
            value += sum(bit * 2.0 ** -(i + 1) for i, bit in enumerate(mantissa))
            if biased_exponent == 0:
                value *= 2.0**-bias  # subnormal
            else:
                value *= 2.0 ** -(biased_exponent - bias - 1)
            values.append(value)
            if signed:
                values.append(-value)
    values += [0.0] * (256 - len(values))
    code = torch.tensor(sorted(values), dtype=torch.float32)
    return code / code.max()


def create_linear_map(signed: bool = True, total_bits: int = 8, add_zero: bool = True) -> torch.Tensor:
    """Evenly spaced values in [-1, 1] (or [0, 1]), padded with zeros in the middle to 256."""
    total = 2**total_bits
    if add_zero or total_bits < 8:
        total = total - 1 if signed else total
    values = torch.linspace(-1.0 if signed else 0.0, 1.0, total)
    gap = 256 - values.numel()
    if gap == 0:
        return values
    half = values.numel() // 2
    return torch.cat((values[:half], torch.zeros(gap), values[half:]))
