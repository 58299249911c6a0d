"""``matmul_4bit``: ``A @ dequantize(W).T (+ bias)`` for a 4-bit weight, with autograd.

Gradients flow to ``A`` (and ``bias``); the quantized weight is frozen, as in QLoRA. The
forward runs the fused 4-bit matmul op (``gemm_4bit``: the packed weight is read once and
dequantized in registers); the backward multiplies by the dequantized weight.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from bnb_kernels.codebooks import fourbit_table
from bnb_kernels.ops.fourbit_matmul import NESTED_BLOCKSIZE, prepare_gemm_4bit
from bnb_kernels.ops.quant import BLOCKSIZES_4BIT
from bnb_quant import QuantState, dequantize_4bit, dequantize_blockwise

__all__ = ["MatMul4Bit", "matmul_4bit", "traceable_linear_4bit"]

Runner = Callable[..., torch.Tensor]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The same storage as a plain tensor (no subclass __torch_function__ on the hot path)."""
    if type(t) is torch.Tensor:
        return t
    with torch._C.DisableTorchFunctionSubclass():
        return t.view(t.shape)


def check_quant_state(B: torch.Tensor, quant_state: Any, expect_in: int | None = None) -> tuple[int, int]:
    """Validate a packed weight against its state; returns (N, K). Raises ValueError/TypeError."""
    if quant_state is None:
        raise ValueError(
            "the 4-bit weight has no quant_state: it was never quantized (move the module or Params4bit "
            "to a device first, or load a quantized state dict)"
        )
    if not isinstance(quant_state, QuantState):
        raise TypeError(f"quant_state must be a QuantState, got {type(quant_state).__name__}")
    if quant_state.quant_type not in ("nf4", "fp4"):
        raise ValueError(f"quant_state.quant_type must be 'nf4' or 'fp4', got {quant_state.quant_type!r}")
    if quant_state.blocksize not in BLOCKSIZES_4BIT:
        raise ValueError(f"quant_state.blocksize must be one of {list(BLOCKSIZES_4BIT)}, got {quant_state.blocksize}")
    shape = quant_state.shape
    if shape is None or len(shape) != 2:
        raise ValueError(f"quant_state.shape must be [out_features, in_features], got {shape}")
    N, K = int(shape[0]), int(shape[1])
    nbytes = B.numel() * B.element_size()
    if nbytes != (N * K + 1) // 2:
        raise ValueError(
            f"mismatched quant_state: the packed weight holds {nbytes} bytes but quant_state describes "
            f"a [{N}, {K}] weight ({(N * K + 1) // 2} bytes)"
        )
    if B.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"the packed 4-bit weight must be uint8/float16/bfloat16/float32 storage, got {B.dtype}")
    blocks = -(N * K // -quant_state.blocksize)
    if quant_state.absmax.numel() != blocks:
        raise ValueError(
            f"mismatched quant_state: absmax has {quant_state.absmax.numel()} entries, a [{N}, {K}] weight "
            f"with blocksize {quant_state.blocksize} needs {blocks}"
        )
    if quant_state.absmax.device != B.device:
        raise ValueError(f"quant_state is on {quant_state.absmax.device} but the weight is on {B.device}")
    if expect_in is not None and K != expect_in:
        raise ValueError(f"quant_state describes {K} input features, the layer has {expect_in}")
    return N, K


def _op_args(qs: QuantState) -> tuple:
    """(absmax, absmax_8bit, absmax_code, absmax_offset) for gemm_4bit."""
    if not qs.nested:
        return qs.absmax, None, None, None
    s2 = qs.state2
    offset = qs.offset if isinstance(qs.offset, torch.Tensor) else torch.tensor(float(qs.offset))
    offset = offset.to(device=qs.absmax.device, dtype=torch.float32)
    if s2.blocksize != NESTED_BLOCKSIZE or qs.absmax.dtype != torch.uint8:
        flat = dequantize_blockwise(qs.absmax, s2).float() + offset
        return flat, None, None, None
    return s2.absmax, qs.absmax, s2.code, offset


def build_runner(B: torch.Tensor, qs: QuantState) -> Runner:
    """Validate once and bind the fused op to this weight: ``run(A, bias=None)``."""
    N, K = check_quant_state(B, qs)
    code = qs.code
    if code is not None:
        expected = fourbit_table(qs.quant_type, code.device)
        if code.numel() != 16 or not torch.equal(code.float(), expected):
            raise ValueError(
                f"mismatched quant_state: its quant_map is not the {qs.quant_type} codebook "
                "(quant_type and quant_map disagree)"
            )
    absmax, a8, code2, offset = _op_args(qs)
    return prepare_gemm_4bit(_plain(B), [N, K], absmax, qs.blocksize, qs.quant_type, a8, code2, offset)


_RUNNERS: dict[int, tuple[Any, int, Any, Runner]] = {}


def _cached_runner(B: torch.Tensor, qs: QuantState) -> Runner:
    ptr = B.data_ptr()
    entry = _RUNNERS.get(id(qs))
    if entry is not None and entry[0]() is qs and entry[1] == ptr and entry[2] is qs.absmax:
        return entry[3]
    run = build_runner(B, qs)
    key = id(qs)
    _RUNNERS[key] = (weakref.ref(qs), ptr, qs.absmax, run)
    weakref.finalize(qs, _RUNNERS.pop, key, None)
    return run


class MatMul4Bit(torch.autograd.Function):
    """Autograd of the 4-bit matmul: gradients for A and bias, none for the frozen weight."""

    @staticmethod
    def forward(ctx, A, B, out, bias, quant_state, runner=None):
        run = runner if runner is not None else _cached_runner(_plain(B), quant_state)
        result = run(A, bias)
        ctx.quant_state = quant_state
        ctx.save_for_backward(B)
        ctx.has_bias = bias is not None
        ctx.dtype_bias = None if bias is None else bias.dtype
        if out is not None:
            out.copy_(result)
            return out
        return result

    @staticmethod
    def backward(ctx, grad_output):
        (B,) = ctx.saved_tensors
        qs = ctx.quant_state
        grad_A = grad_bias = None
        if ctx.needs_input_grad[0]:
            W = dequantize_4bit(_plain(B).reshape(-1, 1), qs).to(grad_output.dtype)
            grad_A = torch.matmul(grad_output, W.reshape(qs.shape))
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0).to(ctx.dtype_bias)
        return grad_A, None, None, grad_bias, None, None


def matmul_4bit(
    A: torch.Tensor,
    B: torch.Tensor,
    quant_state: QuantState,
    out: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``A @ dequantize(B, quant_state).T + bias``; differentiable in ``A`` and ``bias``.

    ``B`` is the packed 4-bit weight (any view of it, e.g. ``weight.t()`` as the reference
    release passes it); ``quant_state`` describes it.
    """
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"A must be a torch.Tensor, got {type(A).__name__}")
    if not isinstance(B, torch.Tensor):
        raise TypeError(f"B must be a torch.Tensor, got {type(B).__name__}")
    N, K = check_quant_state(B, quant_state)
    if A.shape[-1] != K:
        raise ValueError(f"A has {A.shape[-1]} features (shape {tuple(A.shape)}), the 4-bit weight expects {K}")
    if A.device != B.device:
        raise ValueError(f"A is on {A.device} but the 4-bit weight is on {B.device}")
    if not A.is_floating_point():
        raise TypeError(f"A must be a floating point tensor, got {A.dtype}")
    if bias is not None and (bias.shape[-1] != N or bias.device != A.device):
        raise ValueError(f"bias must have {N} elements on {A.device}, got shape {tuple(bias.shape)} on {bias.device}")
    if torch.is_grad_enabled() and (A.requires_grad or (bias is not None and bias.requires_grad)):
        return MatMul4Bit.apply(A, B, out, bias, quant_state)
    result = _cached_runner(_plain(B), quant_state)(A, bias)
    if out is not None:
        out.copy_(result)
        return out
    return result


class _MatMul4BitOp(torch.autograd.Function):
    """The same function built only from ``torch.ops.bitsandbytes`` ops (for torch.compile)."""

    @staticmethod
    def forward(ctx, A, B, N, K, absmax, blocksize, quant_type, bias, a8, code2, offset):
        out = torch.ops.bitsandbytes.gemm_4bit(A, B, [N, K], absmax, blocksize, quant_type, bias, a8, code2, offset)
        ctx.save_for_backward(B, absmax, a8, code2, offset)
        ctx.meta = (N, K, blocksize, quant_type, bias is not None, None if bias is None else bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        B, absmax, a8, code2, offset = ctx.saved_tensors
        N, K, blocksize, quant_type, has_bias, bias_dtype = ctx.meta
        grad_A = grad_bias = None
        if ctx.needs_input_grad[0]:
            if a8 is not None:
                absmax = (
                    torch.ops.bitsandbytes.dequantize_blockwise(a8, absmax, code2, NESTED_BLOCKSIZE, torch.float32)
                    + offset
                )
            W = torch.ops.bitsandbytes.dequantize_4bit(
                B.view(torch.uint8).reshape(-1, 1), absmax, blocksize, quant_type, [N, K], grad_output.dtype
            )
            grad_A = torch.matmul(grad_output, W)
        if has_bias and ctx.needs_input_grad[7]:
            grad_bias = grad_output.reshape(-1, N).sum(0).to(bias_dtype)
        return grad_A, None, None, None, None, None, None, grad_bias, None, None, None


def traceable_linear_4bit(
    A: torch.Tensor, B: torch.Tensor, quant_state: QuantState, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``matmul_4bit`` written with the registered ops only: what ``torch.compile`` traces
    (no validation that reads tensor data, no cached launch closures)."""
    N, K = int(quant_state.shape[0]), int(quant_state.shape[1])
    absmax, a8, code2, offset = _op_args(quant_state)
    if torch.is_grad_enabled() and (A.requires_grad or (bias is not None and bias.requires_grad)):
        return _MatMul4BitOp.apply(
            A, B, N, K, absmax, quant_state.blocksize, quant_state.quant_type, bias, a8, code2, offset
        )
    return torch.ops.bitsandbytes.gemm_4bit(
        A, B, [N, K], absmax, quant_state.blocksize, quant_state.quant_type, bias, a8, code2, offset
    )
