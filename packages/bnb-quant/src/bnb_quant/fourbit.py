"""4-bit quantization (NF4, FP4): two codes per byte, one float32 absmax per block,
optionally with the absmax itself quantized to 8 bits ("compress_statistics")."""

from __future__ import annotations

import torch

from bnb_kernels.ops.quant import BLOCKSIZES_4BIT, QUANT_STORAGE_DTYPES

from . import _checks
from .blockwise import _flat_absmax, quantize_blockwise
from .codebooks import get_4bit_type
from .quant_state import QuantState

__all__ = [
    "dequantize_4bit",
    "dequantize_fp4",
    "dequantize_nf4",
    "quantize_4bit",
    "quantize_fp4",
    "quantize_nf4",
]

QUANT_TYPES = ("nf4", "fp4")
NESTED_BLOCKSIZE = 256

_FOURBIT_CODES: dict[tuple[str, torch.device], torch.Tensor] = {}


def _fourbit_code(quant_type: str, device: torch.device) -> torch.Tensor:
    """The 16-value codebook on ``device``; a host-to-device copy per call would make every
    quantize_4bit wait for the GPU, so the device copy is cached and each state gets a clone
    (states must not share storage: safetensors refuses shared tensors)."""
    key = (quant_type, device)
    code = _FOURBIT_CODES.get(key)
    if code is None:
        code = _FOURBIT_CODES[key] = get_4bit_type(quant_type, device=device)
    return code.clone()


def quantize_4bit(
    A: torch.Tensor,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
    compress_statistics: bool = False,
    quant_type: str = "fp4",
    quant_storage: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, QuantState]:
    """Quantize ``A`` to 4-bit codes packed two per byte.

    Returns the packed tensor, shape ``[(numel + 1) // (2 * itemsize), 1]`` of
    ``quant_storage``, and the QuantState needed to dequantize it.
    """
    blocksize = 64 if blocksize is None else blocksize
    _checks.tensor("A", A, _checks.FLOAT_DTYPES)
    _checks.nonempty("A", A)
    _checks.choice("blocksize", blocksize, BLOCKSIZES_4BIT)
    _checks.choice("quant_type", quant_type, QUANT_TYPES)
    _checks.choice("quant_storage", quant_storage, QUANT_STORAGE_DTYPES)
    packed_bytes = (A.numel() + 1) // 2
    if packed_bytes % quant_storage.itemsize:
        raise ValueError(
            f"{A.numel()} elements pack into {packed_bytes} bytes, not a whole number of "
            f"{quant_storage} values; use quant_storage=torch.uint8 for this size"
        )
    _checks.same_device(A=A, absmax=absmax, out=out)

    packed, _absmax = torch.ops.bitsandbytes.quantize_4bit(A.contiguous(), blocksize, quant_type, quant_storage)
    code = _fourbit_code(quant_type, A.device)
    if compress_statistics:
        offset = _absmax.mean()
        qabsmax, state2 = quantize_blockwise(_absmax - offset, blocksize=NESTED_BLOCKSIZE)
        state = QuantState(
            absmax=qabsmax,
            shape=A.shape,
            dtype=A.dtype,
            blocksize=blocksize,
            code=code,
            quant_type=quant_type,
            offset=offset,
            state2=state2,
        )
    else:
        state = QuantState(
            absmax=_absmax, shape=A.shape, dtype=A.dtype, blocksize=blocksize, code=code, quant_type=quant_type
        )
        if absmax is not None:
            _checks.numel("absmax", absmax, _absmax.numel())
            state.absmax = absmax.copy_(_absmax.view_as(absmax))
    if out is not None:
        _checks.numel("out", out, packed.numel())
        packed = out.copy_(packed.view_as(out))
    return packed, state


def dequantize_4bit(
    A: torch.Tensor,
    quant_state: QuantState | None = None,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
    quant_type: str = "fp4",
) -> torch.Tensor:
    """Inverse of ``quantize_4bit``. Give a QuantState, or ``absmax`` with ``out`` (which
    sets the shape and dtype) as the reference release allows."""
    blocksize = 64 if blocksize is None else blocksize
    _checks.tensor("A", A, QUANT_STORAGE_DTYPES)
    if quant_state is None:
        if absmax is None or out is None:
            raise ValueError("dequantize_4bit needs quant_state, or both absmax and out")
        quant_state = QuantState(
            absmax=absmax, shape=out.shape, dtype=out.dtype, blocksize=blocksize, quant_type=quant_type
        )
    if not isinstance(quant_state, QuantState):
        raise TypeError(f"quant_state must be a QuantState, got {type(quant_state).__name__}")
    _checks.choice("quant_state.quant_type", quant_state.quant_type, QUANT_TYPES)
    _checks.choice("quant_state.blocksize", quant_state.blocksize, BLOCKSIZES_4BIT)
    if quant_state.shape is None or quant_state.dtype is None:
        raise ValueError("quant_state must carry the shape and dtype of the original tensor")
    _checks.choice("quant_state.dtype", quant_state.dtype, _checks.FLOAT_DTYPES)
    n = quant_state.shape.numel()
    expected_bytes = (n + 1) // 2
    if A.numel() * A.element_size() != expected_bytes:
        raise ValueError(
            f"A holds {A.numel() * A.element_size()} bytes, but a 4-bit tensor of shape "
            f"{tuple(quant_state.shape)} packs into {expected_bytes}"
        )
    flat_absmax = _flat_absmax(quant_state)
    _checks.numel("absmax", flat_absmax, -(n // -quant_state.blocksize))
    _checks.same_device(A=A, absmax=flat_absmax, out=out)
    args = (
        A.contiguous(),
        flat_absmax,
        quant_state.blocksize,
        quant_state.quant_type,
        list(quant_state.shape),
        quant_state.dtype,
    )
    if out is not None:
        _checks.tensor("out", out, (quant_state.dtype,))
        if tuple(out.shape) != tuple(quant_state.shape):
            raise ValueError(f"out must have shape {tuple(quant_state.shape)}, got {tuple(out.shape)}")
        torch.ops.bitsandbytes.dequantize_4bit.out(*args, out=out)
    else:
        out = torch.ops.bitsandbytes.dequantize_4bit(*args)
    if A.shape[0] == 1:  # a transposed packed weight (as the reference release stores it)
        return out.t()
    return out


def quantize_fp4(
    A: torch.Tensor,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
    compress_statistics: bool = False,
    quant_storage: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, QuantState]:
    return quantize_4bit(A, absmax, out, blocksize, compress_statistics, "fp4", quant_storage)


def quantize_nf4(
    A: torch.Tensor,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
    compress_statistics: bool = False,
    quant_storage: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, QuantState]:
    return quantize_4bit(A, absmax, out, blocksize, compress_statistics, "nf4", quant_storage)


def dequantize_fp4(
    A: torch.Tensor,
    quant_state: QuantState | None = None,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
) -> torch.Tensor:
    return dequantize_4bit(A, quant_state, absmax, out, blocksize, "fp4")


def dequantize_nf4(
    A: torch.Tensor,
    quant_state: QuantState | None = None,
    absmax: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    blocksize: int | None = None,
) -> torch.Tensor:
    return dequantize_4bit(A, quant_state, absmax, out, blocksize, "nf4")
