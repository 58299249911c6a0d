"""Blockwise 8-bit quantization with a 256-entry codebook (the dynamic map by default)."""

from __future__ import annotations

import torch

from bnb_kernels.ops.quant import BLOCKSIZES_8BIT

from . import _checks
from .codebooks import create_dynamic_map
from .quant_state import QuantState

__all__ = ["dequantize_blockwise", "quantize_blockwise"]

_DYNAMIC_MAPS: dict[torch.device, torch.Tensor] = {}


def dynamic_map(device: torch.device) -> torch.Tensor:
    """The default signed dynamic map, cached per device."""
    code = _DYNAMIC_MAPS.get(device)
    if code is None:
        code = _DYNAMIC_MAPS[device] = create_dynamic_map().to(device)
    return code


def _check_code(code: torch.Tensor) -> None:
    _checks.tensor("code", code, (torch.float32,))
    _checks.numel("code", code, 256)


def quantize_blockwise(
    A: torch.Tensor,
    code: torch.Tensor | None = None,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int = 4096,
    nested: bool = False,
) -> tuple[torch.Tensor, QuantState]:
    """Quantize ``A`` to 8-bit codes, one float32 absmax per ``blocksize`` elements.

    Returns the uint8 codes (shape of ``A``) and a QuantState. With ``nested=True`` the
    absmax values are themselves quantized (offset by their mean, same block size).
    """
    _checks.tensor("A", A, _checks.FLOAT_DTYPES)
    _checks.nonempty("A", A)
    _checks.choice("blocksize", blocksize, BLOCKSIZES_8BIT)
    code = dynamic_map(A.device) if code is None else code
    _check_code(code)
    _checks.same_device(A=A, code=code, absmax=absmax, out=out)
    if out is not None:
        _checks.tensor("out", out, (torch.uint8,))
        _checks.numel("out", out, A.numel())

    codes, _absmax = torch.ops.bitsandbytes.quantize_blockwise(A.contiguous(), code, blocksize)
    if nested:
        offset = _absmax.mean()
        # As the reference release: the absmax values are quantized with the same block size.
        qabsmax, state2 = quantize_blockwise(_absmax - offset, blocksize=blocksize, nested=False)
        state = QuantState(
            absmax=qabsmax, code=code.clone(), blocksize=blocksize, dtype=A.dtype, offset=offset, state2=state2
        )
    else:
        state = QuantState(absmax=_absmax, code=code.clone(), blocksize=blocksize, dtype=A.dtype)
        if absmax is not None:
            _checks.numel("absmax", absmax, _absmax.numel())
            state.absmax = absmax.copy_(_absmax.view_as(absmax))
    if out is not None:
        codes = out.copy_(codes.view_as(out))
    return codes, state


def _flat_absmax(state: QuantState) -> torch.Tensor:
    """float32 absmax of a state, dequantizing the nested absmax when there is one."""
    if not state.nested:
        return state.absmax if state.absmax.dtype == torch.float32 else state.absmax.float()
    assert state.state2 is not None
    absmax = dequantize_blockwise(state.absmax, state.state2)
    return (absmax + state.offset).float()


def dequantize_blockwise(
    A: torch.Tensor,
    quant_state: QuantState | None = None,
    absmax: torch.Tensor | None = None,
    code: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int = 4096,
    nested: bool = False,
) -> torch.Tensor:
    """Inverse of ``quantize_blockwise``: give a QuantState, or ``absmax`` (and ``code``)."""
    _checks.tensor("A", A, (torch.uint8,))
    if quant_state is None:
        if absmax is None:
            raise ValueError("dequantize_blockwise needs quant_state or absmax")
        code = dynamic_map(A.device) if code is None else code
        quant_state = QuantState(absmax=absmax, code=code, blocksize=blocksize, dtype=torch.float32)
    if not isinstance(quant_state, QuantState):
        raise TypeError(f"quant_state must be a QuantState, got {type(quant_state).__name__}")
    _checks.choice("blocksize", quant_state.blocksize, BLOCKSIZES_8BIT)
    assert quant_state.code is not None
    _check_code(quant_state.code)
    flat_absmax = _flat_absmax(quant_state)
    blocks = -(A.numel() // -quant_state.blocksize)
    _checks.numel("absmax", flat_absmax, blocks)
    _checks.same_device(A=A, absmax=flat_absmax, out=out)
    qcode = quant_state.code.to(A.device)
    dtype = quant_state.dtype or torch.float32
    if out is not None:
        _checks.tensor("out", out, (dtype,))
        _checks.numel("out", out, A.numel())
        torch.ops.bitsandbytes.dequantize_blockwise.out(
            A.contiguous(), flat_absmax, qcode, quant_state.blocksize, dtype, out=out
        )
        return out
    return torch.ops.bitsandbytes.dequantize_blockwise(A.contiguous(), flat_absmax, qcode, quant_state.blocksize, dtype)
