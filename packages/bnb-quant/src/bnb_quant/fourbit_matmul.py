"""``gemv_4bit``: one row of activations times a 4-bit weight, as ``bitsandbytes.functional``
exposes it (the op is ``torch.ops.bitsandbytes.gemv_4bit``)."""

from __future__ import annotations

import torch

from . import _checks
from .blockwise import _flat_absmax
from .quant_state import QuantState

__all__ = ["gemv_4bit"]


def gemv_4bit(
    A: torch.Tensor,
    B: torch.Tensor,
    out: torch.Tensor | None = None,
    transposed_A: bool = False,
    transposed_B: bool = False,
    state: QuantState | None = None,
) -> torch.Tensor:
    """``A @ dequantize(B, state).T`` for ``A`` with leading dimensions of 1 (``[1, K]``,
    ``[1, 1, K]``). ``state`` comes from ``quantize_4bit``; a nested absmax is decoded first."""
    if state is None:
        raise ValueError("state cannot be None: gemv_4bit needs the QuantState from quantize_4bit")
    if not isinstance(state, QuantState):
        raise TypeError(f"state must be a QuantState, got {type(state).__name__}")
    _checks.tensor("A", A, _checks.FLOAT_DTYPES)
    _checks.tensor("B", B)
    if A.numel() != A.shape[-1]:
        raise ValueError(
            f"A must be a vector with leading dimensions of 1 (e.g. [1, 1, K]), got shape {tuple(A.shape)}"
        )
    if state.shape is None or len(state.shape) != 2:
        raise ValueError(f"state must describe a 2-d weight, got shape {state.shape}")
    code = state.code if state.code is not None else None
    if code is None:
        raise ValueError("state has no quant_map (code)")
    absmax = _flat_absmax(state)
    shape = [int(state.shape[0]), int(state.shape[1])]
    if out is not None:
        _checks.tensor("out", out, (A.dtype,))
        torch.ops.bitsandbytes.gemv_4bit.out(A, B, shape, absmax, code.to(A.device), state.blocksize, out=out)
        return out
    return torch.ops.bitsandbytes.gemv_4bit(A, B, shape, absmax, code.to(A.device), state.blocksize)
