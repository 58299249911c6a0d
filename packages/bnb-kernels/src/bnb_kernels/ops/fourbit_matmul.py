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

__all__ = ["NESTED_BLOCKSIZE", "check_gemm_4bit_args", "gemm_4bit_direct", "prepare_gemm_4bit"]

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
    torch._check(blocksize > 0, lambda: f"blocksize must be positive, got {blocksize}")
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


def check_gemm_4bit_args(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str | None = None,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    code: torch.Tensor | None = None,
) -> tuple[int, int]:
    """Validate the arguments of the 4-bit matmul ops; returns (N, K). Raises ValueError or
    TypeError naming what was expected (the backends call this before any kernel runs)."""
    for name, t in (("A", A), ("B", B), ("absmax", absmax)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if A.dtype not in _FLOATS:
        raise TypeError(f"A must be float16, bfloat16 or float32, got {A.dtype}")
    if B.dtype not in _STORAGE:
        raise TypeError(f"B (packed 4-bit weight) must be uint8, float16, bfloat16 or float32, got {B.dtype}")
    if len(shapeB) != 2 or int(shapeB[0]) < 0 or int(shapeB[1]) <= 0:
        raise ValueError(f"shapeB must be [out_features, in_features], got {list(shapeB)}")
    N, K = int(shapeB[0]), int(shapeB[1])
    if A.dim() == 0 or A.shape[-1] != K:
        raise ValueError(
            f"A has {A.shape[-1] if A.dim() else 0} features (shape {tuple(A.shape)}), the 4-bit weight expects {K}"
        )
    if blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"blocksize must be a power of two from 32 to 4096, got {blocksize}")
    if quant_type is not None and quant_type not in ("nf4", "fp4"):
        raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")
    nbytes = B.numel() * B.element_size()
    if nbytes != (N * K + 1) // 2:
        raise ValueError(f"B holds {nbytes} bytes, a 4-bit [{N}, {K}] weight packs into {(N * K + 1) // 2}")
    blocks = -(N * K // -blocksize)
    if absmax_8bit is not None:
        if absmax_code is None:
            raise ValueError("nested absmax needs absmax_8bit, absmax_code and absmax_offset together")
        if absmax_8bit.dtype != torch.uint8 or absmax_8bit.numel() != blocks:
            raise ValueError(
                f"absmax_8bit must be {blocks} uint8 codes, got {absmax_8bit.numel()} of {absmax_8bit.dtype}"
            )
        if absmax.numel() != -(blocks // -NESTED_BLOCKSIZE):
            raise ValueError(f"nested absmax must have {-(blocks // -NESTED_BLOCKSIZE)} entries, got {absmax.numel()}")
        if absmax_code.numel() != 256:
            raise ValueError(f"absmax_code must have 256 entries, got {absmax_code.numel()}")
    elif absmax.numel() != blocks:
        raise ValueError(
            f"absmax must have {blocks} entries for a [{N}, {K}] weight with blocksize {blocksize}, got {absmax.numel()}"
        )
    if code is not None and code.numel() != 16:
        raise ValueError(f"code must be the 16-entry 4-bit codebook, got {code.numel()} entries")
    if bias is not None and bias.numel() != N:
        raise ValueError(f"bias must have {N} elements, got {bias.numel()}")
    devices = {t.device for t in (A, B, absmax, bias, absmax_8bit, absmax_code, code) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"expected every tensor on one device, got {sorted(str(d) for d in devices)}")
    return N, K


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
