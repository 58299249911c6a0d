"""``bnb.matmul``: the LLM.int8() matrix product ``A @ B.T`` with its autograd, and the
``MatmulLtState`` that carries the quantized weight between calls.

Forward: the activations are quantized row-wise to int8 (columns holding a value with
``|x| >= threshold`` stay in 16-bit), multiplied with the int8 weight ``CB`` and rescaled by
the row and column absmax (``SCB``); all of it is one op, ``int8_linear_fused``, that a
backend fuses (on CUDA without host synchronization). Without autograd (inference mode,
or nothing requires a gradient) the op is called directly.

Backward: ``grad_A = grad @ dequant(CB)`` as in the reference release; ``grad_B`` (only for
16-bit weights) is ``grad.T @ A`` in the activation dtype, which is exact where the
reference's int8 weight gradient is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from math import prod
from typing import Any

import torch

from bnb_kernels import implementations, selected_backend
from bnb_quant.int8 import int8_vectorwise_quant

__all__ = ["MatMul8bitLt", "MatmulLtState", "matmul"]

_FLOAT = (torch.float16, torch.bfloat16, torch.float32)
_INV_127 = 1.0 / 127.0


@dataclasses.dataclass
class MatmulLtState:
    """State of one int8 linear layer: the int8 weight ``CB`` [out, in] and its float32 row
    absmax ``SCB`` [out], the outlier threshold and the training flags."""

    _tile_indices: torch.Tensor | None = None
    force_no_igemmlt: bool = False
    CB: torch.Tensor | None = None
    CxB: torch.Tensor | None = None
    SB: Any = None
    SCB: torch.Tensor | None = None
    CxBt: torch.Tensor | None = None
    SBt: Any = None
    CBt: torch.Tensor | None = None
    subB: torch.Tensor | None = None
    outlier_pool: Any = None
    has_accumulated_gradients: bool = False
    threshold: float = 0.0
    idx: torch.Tensor | None = None
    is_training: bool = True
    has_fp16_weights: bool = True
    memory_efficient_backward: bool = False
    use_pool: bool = False
    formatB: str = "row"

    def reset_grads(self) -> None:
        self.CB = None
        self.CxB = None
        self.SB = None
        self.SCB = None
        self.CxBt = None
        self.SBt = None
        self.CBt = None

    @property
    def tile_indices(self) -> torch.Tensor:
        raise ValueError("tile_indices belong to the removed col_turing/col_ampere layouts; weights are row-major")


def _check_inputs(A: torch.Tensor, B: torch.Tensor, state: MatmulLtState, bias: torch.Tensor | None) -> None:
    if not isinstance(A, torch.Tensor) or A.dtype not in _FLOAT:
        raise TypeError(f"A must be a float16, bfloat16 or float32 tensor, got {getattr(A, 'dtype', type(A))}")
    if not isinstance(B, torch.Tensor):
        raise TypeError(f"B must be a tensor (the [out, in] weight), got {type(B).__name__}")
    if A.dim() < 1:
        raise ValueError("A must have at least one dimension")
    if not state.threshold >= 0.0:
        raise ValueError(f"threshold must be >= 0, got {state.threshold}")
    CB = state.CB
    if CB is None and B.device != A.device:
        raise ValueError(f"the weight is on {B.device} but the input is on {A.device}; move the module first")
    if B.dtype == torch.int8 and (CB is None or state.SCB is None):
        raise RuntimeError(
            "B is an int8 weight but the state holds no scales (SCB): the weight was never quantized on this "
            "device. Quantize it with Int8Params(...).to(device) or load a state dict that carries SCB."
        )
    if B.dtype not in (*_FLOAT, torch.int8):
        raise TypeError(f"B must be a float or int8 weight, got {B.dtype}")
    shape = tuple(CB.shape) if (CB is not None and not state.has_fp16_weights) else tuple(B.shape)
    if len(shape) != 2:
        raise ValueError(f"the weight must be 2-d [out_features, in_features], got shape {shape}")
    if A.shape[-1] != shape[1]:
        raise ValueError(
            f"A has {A.shape[-1]} features in its last dimension but the weight {shape} expects {shape[1]}"
        )
    if CB is not None and state.SCB is not None and state.SCB.numel() != CB.shape[0]:
        raise ValueError(f"SCB must have {CB.shape[0]} values (one per output row), got {state.SCB.numel()}")
    if CB is not None and CB.device != A.device:
        raise ValueError(
            f"the int8 weight is on {CB.device} but the input is on {A.device}; move the module with .to({A.device})"
        )
    if bias is not None:
        if bias.numel() != shape[0]:
            raise ValueError(f"bias must have {shape[0]} values, got {bias.numel()}")
        if bias.device != A.device:
            raise ValueError(f"bias is on {bias.device} but the input is on {A.device}")


def _ensure_quantized(B: torch.Tensor, state: MatmulLtState) -> None:
    """Quantize a 16/32-bit weight into ``state.CB``/``SCB`` when the state asks for it."""
    if not (state.has_fp16_weights or state.CB is None):
        return
    has_grad = getattr(B, "grad", None) is not None
    if (state.is_training and not has_grad) or state.CB is None or state.SCB is None:
        state.reset_grads()
        W = B.detach()
        if W.dtype == torch.int8:
            raise RuntimeError("cannot re-quantize an int8 weight: its scales (SCB) are missing")
        state.CB, state.SCB, _ = int8_vectorwise_quant(W.contiguous())


_FUSED: dict[tuple[str, str], Callable[..., torch.Tensor]] = {}


def _fused_impl(device_type: str) -> Callable[..., torch.Tensor]:
    """The ``int8_linear_fused`` implementation the registry selects for ``device_type``.

    Eager calls use it directly: going through ``torch.ops`` costs more host time than the
    whole GPU kernel at 1-16 tokens. Under ``torch.compile`` the op itself is called.
    """
    name = selected_backend("int8_linear_fused", device_type)  # the registry caches its choice
    fn = _FUSED.get((device_type, name))
    if fn is None:
        fn = next(i.fn for i in implementations("int8_linear_fused") if i.backend == name and i.serves(device_type))
        _FUSED[(device_type, name)] = fn
    return fn


def _forward(A: torch.Tensor, state: MatmulLtState, bias: torch.Tensor | None) -> torch.Tensor:
    assert state.CB is not None and state.SCB is not None
    if bias is not None and bias.dtype != A.dtype:
        bias = bias.to(A.dtype)
    if torch.compiler.is_compiling():
        return torch.ops.bitsandbytes.int8_linear_fused.default(A, state.CB, state.SCB, bias, float(state.threshold))
    return _fused_impl(A.device.type)(A, state.CB, state.SCB, bias, float(state.threshold))


def _empty_output(A: torch.Tensor, B: torch.Tensor, state: MatmulLtState) -> torch.Tensor:
    n = state.CB.shape[0] if state.CB is not None else B.shape[0]
    return torch.empty((*A.shape[:-1], n), dtype=A.dtype, device=A.device)


class MatMul8bitLt(torch.autograd.Function):
    """Autograd of the int8 matmul (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        A: torch.Tensor,
        B: torch.Tensor,
        out: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        state: MatmulLtState | None = None,
    ) -> torch.Tensor:
        state = state or MatmulLtState()
        ctx.state = state
        ctx.is_empty = prod(A.shape) == 0
        ctx.dtype_A = A.dtype
        ctx.dtype_bias = None if bias is None else bias.dtype
        ctx.input_shape = A.shape
        ctx.B_shape = B.shape
        ctx.dtype_B = B.dtype
        if ctx.is_empty:
            if B.numel():
                _ensure_quantized(B, state)
            ctx.save_for_backward(None)
            return _empty_output(A, B, state)
        _ensure_quantized(B, state)
        output = _forward(A, state, bias)
        ctx.save_for_backward(A if ctx.needs_input_grad[1] else None)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        state: MatmulLtState = ctx.state
        req_A, req_B, _, req_bias, _ = ctx.needs_input_grad
        (A,) = ctx.saved_tensors
        grad_A = grad_B = grad_bias = None
        if ctx.is_empty:
            if req_A:
                grad_A = torch.zeros(ctx.input_shape, dtype=ctx.dtype_A, device=grad_output.device)
            if req_B:
                grad_B = torch.zeros(ctx.B_shape, dtype=ctx.dtype_B, device=grad_output.device)
            if req_bias:
                grad_bias = torch.zeros(grad_output.shape[-1], dtype=ctx.dtype_bias, device=grad_output.device)
            return grad_A, grad_B, None, grad_bias, None
        g2 = grad_output.reshape(-1, grad_output.shape[-1])
        if req_bias:
            grad_bias = g2.sum(0, dtype=ctx.dtype_bias)
        if req_B:
            A2 = A.reshape(-1, A.shape[-1])
            grad_B = (g2.t().to(A2.dtype) @ A2).to(ctx.dtype_B)
        if req_A:
            if state.CB is None or state.SCB is None:
                raise RuntimeError("the state must hold the int8 weight (CB, SCB) for the backward pass")
            W = state.CB.to(ctx.dtype_A) * (state.SCB.to(torch.float32) * _INV_127).to(ctx.dtype_A).unsqueeze(1)
            grad_A = (g2.to(ctx.dtype_A) @ W).reshape(ctx.input_shape)
        return grad_A, grad_B, None, grad_bias, None


def matmul(
    A: torch.Tensor,
    B: torch.Tensor,
    out: torch.Tensor | None = None,
    state: MatmulLtState | None = None,
    threshold: float = 0.0,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """LLM.int8() product ``A @ B.T`` (+ ``bias``); ``B`` is the [out, in] weight (16/32-bit
    when ``state.has_fp16_weights``, else the int8 ``CB`` with its scales in ``state``)."""
    state = state or MatmulLtState()
    if threshold < 0.0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if threshold > 0.0:
        state.threshold = threshold
    _check_inputs(A, B, state, bias)
    needs_grad = torch.is_grad_enabled() and (
        A.requires_grad or B.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs_grad and prod(A.shape) > 0:
        _ensure_quantized(B, state)
        result = _forward(A, state, bias)
    else:
        result = MatMul8bitLt.apply(A, B, None, bias, state)
    if out is not None:
        out.copy_(result)
        return out
    return result
