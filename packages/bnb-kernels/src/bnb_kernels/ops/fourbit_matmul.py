"""Schemas and fake kernels of the 4-bit matmul ops, plus a low-overhead entry point.

``gemv_4bit`` (and ``.out``) keep the reference release's schema: ``A`` is one row of
activations (leading dimensions of 1), ``B`` the packed 4-bit weight of logical shape
``shapeB = [N, K]``, ``absmax`` its float32 per-block scales, ``code`` the 16-entry
codebook. ``gemm_4bit`` takes any number of rows and the quant type by name, an optional
bias, and optionally the nested (double-quantized) absmax: ``absmax_8bit`` holds uint8
codes, ``absmax_code`` their 256-entry codebook, ``absmax`` the float32 scales of groups
of 256 codes, ``absmax_offset`` the mean that was subtracted; the per-block scale is
``absmax_code[absmax_8bit[i]] * absmax[i // 256] + absmax_offset``.

All of them compute ``A @ dequantize(B).T`` with the weight dequantized to ``A.dtype``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._registry import _select, define_op

__all__ = ["NESTED_BLOCKSIZE", "gemm_4bit_direct", "prepare_gemm_4bit"]

NESTED_BLOCKSIZE = 256

define_op(
    "gemv_4bit",
    "(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize) -> Tensor",
)
define_op(
    "gemv_4bit.out",
    "(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize, Tensor! out) -> ()",
)
define_op(
    "gemm_4bit",
    "(Tensor A, Tensor B, int[] shapeB, Tensor absmax, int blocksize, str quant_type, Tensor? bias=None, "
    "Tensor? absmax_8bit=None, Tensor? absmax_code=None, Tensor? absmax_offset=None) -> Tensor",
)

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_STORAGE = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


def _check_common(A: torch.Tensor, B: torch.Tensor, shapeB: Sequence[int], blocksize: int) -> None:
    torch._check_is_size(blocksize)
    torch._check(A.dtype in _FLOATS, lambda: f"A must be float16, bfloat16 or float32, got {A.dtype}")
    torch._check(B.dtype in _STORAGE, lambda: f"B must be uint8, float16, bfloat16 or float32, got {B.dtype}")
    torch._check(len(shapeB) == 2, lambda: f"shapeB must be [out_features, in_features], got {list(shapeB)}")
    torch._check(
        A.shape[-1] == shapeB[1], lambda: f"A has {A.shape[-1]} features, the 4-bit weight expects {shapeB[1]}"
    )


@torch.library.register_fake("bitsandbytes::gemv_4bit")
def _(
    A: torch.Tensor, B: torch.Tensor, shapeB: Sequence[int], absmax: torch.Tensor, code: torch.Tensor, blocksize: int
) -> torch.Tensor:
    _check_common(A, B, shapeB, blocksize)
    torch._check(A.numel() == A.size(-1), lambda: f"A must be a vector with leading dimensions of 1, got {A.shape}")
    return A.new_empty((*A.shape[:-1], shapeB[0]))


@torch.library.register_fake("bitsandbytes::gemv_4bit.out")
def _(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    out: torch.Tensor,
) -> None:
    _check_common(A, B, shapeB, blocksize)
    torch._check(
        tuple(out.shape) == (*A.shape[:-1], shapeB[0]),
        lambda: f"Expected out.shape == {(*A.shape[:-1], shapeB[0])}, got {tuple(out.shape)}",
    )
    torch._check(out.dtype == A.dtype, lambda: f"Expected out.dtype == {A.dtype}, got {out.dtype}")


@torch.library.register_fake("bitsandbytes::gemm_4bit")
def _(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    _check_common(A, B, shapeB, blocksize)
    return A.new_empty((*A.shape[:-1], shapeB[0]))


def gemm_4bit_direct(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torch.ops.bitsandbytes.gemm_4bit`` without the dispatcher round trip.

    Calls the implementation the registry selected for ``A``'s device directly (the same
    function the op runs), which saves several microseconds per call on the decode path.
    Under ``torch.compile`` it goes through the op so the graph sees it.
    """
    if torch.compiler.is_compiling():
        return torch.ops.bitsandbytes.gemm_4bit(
            A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code, absmax_offset
        )
    return _select("gemm_4bit", A.device.type).fn(
        A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code, absmax_offset
    )


def prepare_gemm_4bit(
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> Callable[..., torch.Tensor]:
    """Bind a quantized weight once; returns ``run(A, bias=None)`` equal to ``gemm_4bit``.

    The backend selected for ``B``'s device may decode its launch arguments here (the
    Triton backend does), so a module that caches the callable pays only for the launch.
    """
    impl = _select("gemm_4bit", B.device.type)
    prepare = getattr(impl.fn, "prepare", None)
    if prepare is not None:
        return prepare(B, shapeB, absmax, blocksize, quant_type, absmax_8bit, absmax_code, absmax_offset)
    fn = impl.fn

    def run(A: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return fn(A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code, absmax_offset)

    return run
