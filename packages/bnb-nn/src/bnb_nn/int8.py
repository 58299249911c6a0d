"""LLM.int8() modules: ``Int8Params``, ``Linear8bitLt`` and ``Embedding8bit``.

State dicts are those of the reference release: ``weight`` int8 [out, in] (row-major),
``SCB`` float32 [out] and ``weight_format`` (uint8 scalar, 0 = row-major). A quantized state
dict loads into a fresh module on any device (no ``.cuda()`` needed first); a 16/32-bit one
is quantized when the module is moved (``.to(device)``/``.cuda()``/``.cpu()``), on its first
forward, or at once when the module already holds int8 weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnb_kernels.ops.int8 import prepare_int8_linear
from bnb_quant.int8 import int8_vectorwise_quant

from .autograd_8bit import MatmulLtState, _forward, matmul

__all__ = ["Embedding8bit", "Int8Params", "Linear8bitLt", "maybe_rearrange_weight"]

WEIGHT_FORMATS = {0: "row"}
_FLOAT = (torch.float16, torch.bfloat16, torch.float32)


class Int8Params(torch.nn.Parameter):
    """A weight that turns into int8 codes ``CB`` (kept as its data) plus float32 row scales
    ``SCB`` when moved to a device, unless ``has_fp16_weights``."""

    CB: torch.Tensor | None
    SCB: torch.Tensor | None
    has_fp16_weights: bool

    def __new__(
        cls,
        data: torch.Tensor | None = None,
        requires_grad: bool = True,
        has_fp16_weights: bool = False,
        CB: torch.Tensor | None = None,
        SCB: torch.Tensor | None = None,
    ) -> Int8Params:
        if data is None:
            data = torch.empty(0)
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a tensor, got {type(data).__name__}")
        if data.dtype == torch.int8 and SCB is not None:
            _check_scales(data, SCB)
        obj = torch.Tensor._make_subclass(cls, data, requires_grad)
        obj.CB = CB
        obj.SCB = SCB
        obj.has_fp16_weights = has_fp16_weights
        return obj

    def _quantize(self, device: torch.device) -> Int8Params:
        if self.has_fp16_weights:
            return super().to(device)  # type: ignore[return-value]
        W = self.data.contiguous().to(device)
        if W.dtype not in _FLOAT:
            raise TypeError(f"only a float16/bfloat16/float32 weight can be quantized, got {W.dtype}")
        CB, SCB, _ = int8_vectorwise_quant(W)
        self.data = CB
        self.CB = CB
        self.SCB = SCB
        return self

    def cpu(self) -> Int8Params:  # type: ignore[override]
        return self.to(device="cpu")

    def cuda(self, device: Any = None, non_blocking: bool = False) -> Int8Params:  # type: ignore[override]
        return self.to(device="cuda" if device is None else device, non_blocking=non_blocking)

    def __deepcopy__(self, memo: dict) -> Int8Params:
        data = copy.deepcopy(self.data, memo)
        quantized = self.CB is not None and self.data.dtype == torch.int8
        return type(self)(
            data,
            requires_grad=self.requires_grad,
            has_fp16_weights=self.has_fp16_weights,
            CB=data if quantized else copy.deepcopy(self.CB, memo),
            SCB=copy.deepcopy(self.SCB, memo),
        )

    def __reduce_ex__(self, protocol: int) -> tuple:
        quantized = self.CB is not None and self.data.dtype == torch.int8
        return (
            _rebuild_int8_params,
            (self.data, self.requires_grad, self.has_fp16_weights, None if quantized else self.CB, self.SCB, quantized),
        )

    def to(self, *args: Any, **kwargs: Any) -> Int8Params:  # type: ignore[override]
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        is_quantized = self.data.dtype == torch.int8
        if not is_quantized and device is not None and device.type != "meta" and self.data.device.type == "cpu":
            return self._quantize(device)
        new = Int8Params(
            super().to(device=device, dtype=dtype if not is_quantized else None, non_blocking=non_blocking),
            requires_grad=self.requires_grad,
            has_fp16_weights=self.has_fp16_weights,
        )
        if is_quantized:
            new.CB = new.data
            if self.SCB is not None and self.SCB.device.type != "meta":
                new.SCB = self.SCB.to(device) if device is not None else self.SCB
        return new


def _check_scales(weight: torch.Tensor, SCB: Any) -> None:
    """An int8 weight [out, in] comes with float32 SCB [out]: one scale per output row."""
    if not isinstance(SCB, torch.Tensor):
        raise TypeError(f"Int8Params: SCB must be a tensor, got {type(SCB).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"Int8Params: an int8 weight with SCB must be 2-d [out, in], got shape {list(weight.shape)}")
    rows = weight.shape[0]
    if SCB.dtype != torch.float32 or tuple(SCB.shape) != (rows,):
        raise ValueError(
            f"Int8Params: SCB must be float32 of shape [{rows}] (one scale per output row of the int8 weight of "
            f"shape {list(weight.shape)}), got {SCB.dtype} of shape {list(SCB.shape)}"
        )


def _rebuild_int8_params(
    data: torch.Tensor,
    requires_grad: bool,
    has_fp16_weights: bool,
    CB: torch.Tensor | None,
    SCB: torch.Tensor | None,
    cb_is_data: bool,
) -> Int8Params:
    p = Int8Params(data, requires_grad=requires_grad, has_fp16_weights=has_fp16_weights, CB=CB, SCB=SCB)
    if cb_is_data:
        p.CB = p.data
    return p


def maybe_rearrange_weight(
    state_dict: dict,
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Load-state-dict pre-hook: accept only the row-major weight format (0 / "row")."""
    if state_dict.get(f"{prefix}weight") is None:
        return
    fmt = state_dict.pop(f"{prefix}weight_format", "row")
    if isinstance(fmt, torch.Tensor):
        fmt = fmt.item()
    if isinstance(fmt, int):
        if fmt not in WEIGHT_FORMATS:
            raise ValueError(f"weight_format must be one of {sorted(WEIGHT_FORMATS)} (0 = row-major), got {fmt}")
        fmt = WEIGHT_FORMATS[fmt]
    if fmt != "row":
        raise ValueError(f"only the 'row' weight format is supported, got {fmt!r}")


class Linear8bitLt(nn.Linear):
    """Linear layer of LLM.int8(): int8 weights, activations quantized per row on the fly,
    input columns holding a value with ``|x| >= threshold`` multiplied in 16-bit.

    Load 16-bit weights, then move the module (``.to(device)``): that quantizes them.
    """

    def __init__(
        self,
        input_features: int,
        output_features: int,
        bias: bool = True,
        has_fp16_weights: bool = True,
        threshold: float = 0.0,
        index: Any = None,
        device: Any = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be >= 0 (0 disables the fp16 outlier columns), got {threshold}")
        super().__init__(input_features, output_features, bias, device)
        self.state = MatmulLtState()
        self.index = index
        self.state.threshold = float(threshold)
        self.state.has_fp16_weights = has_fp16_weights
        if threshold > 0.0 and not has_fp16_weights:
            self.state.use_pool = True
        self.weight = Int8Params(self.weight.data, has_fp16_weights=has_fp16_weights, requires_grad=has_fp16_weights)
        self._register_load_state_dict_pre_hook(maybe_rearrange_weight)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.state.has_fp16_weights:
            return
        scb = self.weight.SCB if self.weight.SCB is not None else self.state.SCB
        if scb is not None:
            destination[prefix + "SCB"] = scb if keep_vars else scb.detach()
            destination[prefix + "weight_format"] = torch.tensor(0, dtype=torch.uint8)

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        wkey, skey, fkey = prefix + "weight", prefix + "SCB", prefix + "weight_format"
        if fkey in state_dict:  # also checked by the pre-hook where torch runs it on this dict
            maybe_rearrange_weight(dict(state_dict), prefix, local_metadata, strict, [], [], [])
        weight = state_dict.get(wkey)
        scb = state_dict.get(skey)
        shape = (self.out_features, self.in_features)
        if weight is not None and tuple(weight.shape) != shape:
            raise ValueError(f"{wkey} must have shape {shape} (out_features, in_features), got {tuple(weight.shape)}")
        if scb is not None:
            if weight is None or weight.dtype != torch.int8:
                raise ValueError(f"{skey} comes with an int8 {wkey}; got {None if weight is None else weight.dtype}")
            if scb.numel() != self.out_features:
                raise ValueError(f"{skey} must have {self.out_features} values (one per output row), got {scb.numel()}")
        elif weight is not None and weight.dtype == torch.int8:
            raise ValueError(f"{wkey} is int8 but the state dict has no {skey} (its row scales)")
        # The weight is handled here; the rest (bias) by nn.Linear.
        rest = {k: v for k, v in state_dict.items() if k not in (wkey, skey, fkey)}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        if wkey in missing_keys:
            missing_keys.remove(wkey)
        if weight is None:
            if strict:
                missing_keys.append(wkey)
            return
        device = self.weight.device
        if scb is not None:
            if self.state.has_fp16_weights:
                raise ValueError(f"{wkey} is int8 with {skey}: load it into Linear8bitLt(..., has_fp16_weights=False)")
            CB = weight.detach().to(device).contiguous().clone()
            SCB = scb.detach().to(device=device, dtype=torch.float32).reshape(-1).clone()
            self.weight = Int8Params(CB, requires_grad=False, has_fp16_weights=False, CB=CB, SCB=SCB)
        else:
            W = weight.detach().to(device)
            if self.weight.dtype == torch.int8 and not self.state.has_fp16_weights:
                CB, SCB, _ = int8_vectorwise_quant(W.contiguous())
                self.weight = Int8Params(CB, requires_grad=False, has_fp16_weights=False, CB=CB, SCB=SCB)
            else:
                with torch.no_grad():
                    if self.weight.dtype == torch.int8:
                        self.weight = Int8Params(
                            W.clone(), requires_grad=self.state.has_fp16_weights, has_fp16_weights=True
                        )
                    else:
                        self.weight.data = W.to(self.weight.dtype).clone()
                        self.weight.CB = self.weight.SCB = None
        self.state.reset_grads()

    def init_8bit_state(self) -> None:
        weight = self.weight
        CB, SCB = weight.CB, weight.SCB
        # Module._apply (.cuda(), .to() of a parent) moves weight.data but leaves the
        # attributes where they were: the moved int8 data are the codes, SCB follows them.
        if CB is not None and CB.device != weight.device and weight.dtype == torch.int8:
            CB = weight.data
        if SCB is not None and SCB.device != weight.device:
            SCB = SCB.to(weight.device)
        self.state.CB = CB
        self.state.SCB = SCB
        weight.CB = None
        weight.SCB = None

    def to(self, *args: Any, **kwargs: Any) -> Linear8bitLt:
        result = super().to(*args, **kwargs)
        device, _, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None:
            if result.state.CB is not None:
                result.state.CB = result.state.CB.to(device)
            if result.state.SCB is not None:
                result.state.SCB = result.state.SCB.to(device)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference hot path: the runner bound to this layer's int8 weight (kept from an
        # earlier call while the state still holds the same CB/SCB), plain dict lookups only.
        d = self.__dict__
        fast = d.get("_bnb_int8_fast")
        if fast is not None and isinstance(x, torch.Tensor) and not torch.compiler.is_compiling():
            run, cb, scb, index, K = fast
            state = d["state"]
            params = self._parameters
            bias = params.get("bias")
            if (
                state.CB is cb
                and state.SCB is scb
                and x.get_device() == index
                and x.dtype in _FLOAT
                and x.shape[-1] == K
                and params["weight"].__dict__.get("CB") is None
                and not (torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)))
            ):
                if bias is not None and bias.dtype != x.dtype:
                    bias.data = bias.data.to(x.dtype)
                return run(x, bias, state.threshold)
        return self._forward_checked(x)

    def _forward_checked(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype not in _FLOAT:
            raise TypeError(f"input must be a float16, bfloat16 or float32 tensor, got {getattr(x, 'dtype', type(x))}")
        # Plain dict lookups on the hot path: Module.__getattr__ and tensor-subclass properties
        # cost microseconds each, more than a whole 1-token kernel on a GPU.
        params = self._parameters
        weight = params["weight"]
        bias = params.get("bias")
        state = self.state
        state.is_training = self.training
        if weight.__dict__.get("CB") is not None:
            self.init_8bit_state()
        CB = state.CB
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features in its last dimension, expected {self.in_features}")
        if CB is not None and CB.device != x.device and weight.device == x.device and weight.dtype == torch.int8:
            # moved by Module._apply after the state was built: the int8 data are the codes
            CB = state.CB = weight.data
            if state.SCB is not None:
                state.SCB = state.SCB.to(x.device)
        if CB is not None and CB.device != x.device:
            raise ValueError(
                f"the int8 weight is on {CB.device} but the input is on {x.device}; call module.to({str(x.device)!r})"
            )
        if bias is not None and bias.dtype != x.dtype:
            bias.data = bias.data.to(x.dtype)
        if (
            CB is not None
            and state.SCB is not None
            and not state.has_fp16_weights
            and x.numel() > 0
            and not (torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)))
        ):
            # inference: nothing else to check or to save; keep a runner for the next calls
            if not torch.compiler.is_compiling():
                scb = state.SCB
                run = prepare_int8_linear(CB, scb)
                self.__dict__["_bnb_int8_fast"] = (run, CB, scb, CB.get_device(), CB.shape[1])
                return run(x, bias, float(state.threshold))
            return _forward(x, state, bias)
        if weight.dtype == torch.int8 and (CB is None or state.SCB is None):
            raise RuntimeError(
                "Linear8bitLt holds an int8 weight without its scales (SCB): it was never quantized. Load a state "
                "dict with SCB, or load 16-bit weights and move the module with .to(device)."
            )
        out = matmul(x, weight, bias=bias, state=state)
        CB = state.CB
        if not state.has_fp16_weights and CB is not None and weight.data_ptr() != CB.data_ptr():
            weight.data = CB
        return out


class Embedding8bit(nn.Embedding):
    """Embedding of LLM.int8(): int8 rows with one float32 absmax each, quantized on
    ``.to(device)``; lookups return ``codes * absmax / 127`` in the original dtype."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device: Any = None, dtype: Any = None) -> None:
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.dtype = self.weight.data.dtype
        self.weight = Int8Params(self.weight.data, has_fp16_weights=False, requires_grad=False)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        raise NotImplementedError("saving an Embedding8bit is not supported (as in the reference release)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.weight.SCB is None or self.weight.dtype != torch.int8:
            raise RuntimeError("Embedding8bit is not quantized yet: call .to(device) (or .cuda()/.cpu()) first")
        if input.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"input must hold int32/int64 indices, got {input.dtype}")
        rows = self.weight.data
        scb = self.weight.SCB
        codes = F.embedding(input, rows)
        stats = F.embedding(input, scb.view(self.num_embeddings, 1))
        return (codes * (stats / 127.0)).to(self.dtype)
