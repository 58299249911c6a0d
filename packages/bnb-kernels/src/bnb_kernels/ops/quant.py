"""Schemas and fake kernels of the blockwise 8-bit and 4-bit (NF4/FP4) quantization ops.

Names and schemas are those of the reference release, so code written against
``torch.ops.bitsandbytes.*`` runs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._registry import define_op

BLOCKSIZES_8BIT = (64, 128, 256, 512, 1024, 2048, 4096)
BLOCKSIZES_4BIT = (32, 64, 128, 256, 512, 1024, 2048, 4096)
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
QUANT_STORAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)

define_op("quantize_blockwise", "(Tensor A, Tensor code, int blocksize) -> (Tensor, Tensor)")
define_op("dequantize_blockwise", "(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype) -> Tensor")
define_op(
    "dequantize_blockwise.out",
    "(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype, Tensor! out) -> ()",
)
define_op("quantize_4bit", "(Tensor A, int blocksize, str quant_type, ScalarType quant_storage) -> (Tensor, Tensor)")
define_op(
    "dequantize_4bit",
    "(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype) -> Tensor",
)
define_op(
    "dequantize_4bit.out",
    "(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype, Tensor! out) -> ()",
)


def _check_blocksize(blocksize: int) -> None:
    # torch._check_is_size is deprecated on newer torch; a plain positivity check serves every version.
    torch._check(blocksize > 0, lambda: f"blocksize must be positive, got {blocksize}")


def num_blocks(n: int, blocksize: int) -> int:
    return -(n // -blocksize)


def packed_4bit_shape(n: int, quant_storage: torch.dtype) -> tuple[int, int]:
    """Shape of the packed 4-bit tensor: two codes per byte, viewed as ``quant_storage``."""
    return ((n + 1) // (quant_storage.itemsize * 2), 1)


@torch.library.register_fake("bitsandbytes::quantize_blockwise")
def _(A: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_blocksize(blocksize)
    absmax = A.new_empty((num_blocks(A.numel(), blocksize),), dtype=torch.float32)
    return torch.empty_like(A, dtype=torch.uint8), absmax


@torch.library.register_fake("bitsandbytes::dequantize_blockwise")
def _(A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype) -> torch.Tensor:
    _check_blocksize(blocksize)
    torch._check(A.dtype == torch.uint8, lambda: f"A must be uint8, got {A.dtype}")
    return torch.empty_like(A, dtype=dtype)


@torch.library.register_fake("bitsandbytes::dequantize_blockwise.out")
def _(
    A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, dtype: torch.dtype, out: torch.Tensor
) -> None:
    _check_blocksize(blocksize)
    torch._check(A.dtype == torch.uint8, lambda: f"A must be uint8, got {A.dtype}")
    torch._check(out.shape == A.shape, lambda: f"Expected out.shape == {A.shape}, got {out.shape}")
    torch._check(out.dtype == dtype, lambda: f"Expected out.dtype == {dtype}, got {out.dtype}")


@torch.library.register_fake("bitsandbytes::quantize_4bit")
def _(
    A: torch.Tensor, blocksize: int, quant_type: str, quant_storage: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_blocksize(blocksize)
    n = A.numel()
    torch._check(
        ((n + 1) // 2) % quant_storage.itemsize == 0,
        lambda: f"{n} elements pack into {(n + 1) // 2} bytes, not a whole number of {quant_storage} values",
    )
    absmax = A.new_empty((num_blocks(n, blocksize),), dtype=torch.float32)
    return A.new_empty(packed_4bit_shape(n, quant_storage), dtype=quant_storage), absmax


@torch.library.register_fake("bitsandbytes::dequantize_4bit")
def _(
    A: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    _check_blocksize(blocksize)
    return A.new_empty(tuple(shape), dtype=dtype)


@torch.library.register_fake("bitsandbytes::dequantize_4bit.out")
def _(
    A: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    out: torch.Tensor,
) -> None:
    _check_blocksize(blocksize)
    torch._check(tuple(out.shape) == tuple(shape), lambda: f"Expected out.shape == {tuple(shape)}, got {out.shape}")
    torch._check(out.dtype == dtype, lambda: f"Expected out.dtype == {dtype}, got {out.dtype}")
