"""Linear4bit (QLoRA), LinearNF4, LinearFP4.

Constructor, state dict layout and behaviour are the reference release's: the float weight
is quantized on the first move to a device; ``state_dict()`` holds ``weight`` (packed),
``weight.absmax``, ``weight.quant_map`` (and ``weight.nested_absmax``,
``weight.nested_quant_map`` when nested) and ``weight.quant_state.bitsandbytes__<type>``;
loading such a state dict into a fresh module restores the quantized weight.

The forward binds the fused 4-bit matmul to the weight once (cached on the parameter) so
each call costs little more than the kernel launch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from bnb_quant import QuantState

from .autograd_4bit import MatMul4Bit, build_runner, check_quant_state, traceable_linear_4bit
from .params4bit import Params4bit, fix_4bit_weight_quant_state_from_module

__all__ = ["Linear4bit", "LinearFP4", "LinearNF4"]


class _Fast:
    """What a forward needs, decoded once per (weight storage, quant state)."""

    __slots__ = ("absmax", "device", "in_features", "plain", "qs", "run")

    def __init__(self, qs: QuantState, device: torch.device, in_features: int, plain: torch.Tensor, run: Any) -> None:
        self.qs = qs
        self.absmax = qs.absmax
        self.device = device
        self.in_features = in_features
        self.plain = plain
        self.run = run


def _fast_path(weight: Params4bit, qs: QuantState) -> _Fast:
    d = weight.__dict__
    with torch._C.DisableTorchFunctionSubclass():
        plain = weight.view(weight.shape)
    _, K = check_quant_state(plain, qs)
    fast = _Fast(qs, plain.device, K, plain, build_runner(plain, qs))
    d["_bnb_fast"] = fast
    return fast


class Linear4bit(torch.nn.Linear):
    """A linear layer with a 4-bit (NF4/FP4) frozen weight, as in QLoRA."""

    def __init__(
        self,
        input_features: int,
        output_features: int,
        bias: bool = True,
        compute_dtype: torch.dtype | None = None,
        compress_statistics: bool = True,
        quant_type: str = "fp4",
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(input_features, output_features, bias, device)
        self.weight = Params4bit(
            self.weight.data,
            requires_grad=False,
            compress_statistics=compress_statistics,
            quant_type=quant_type,
            quant_storage=quant_storage,
            module=self,
        )
        self.compute_dtype = compute_dtype
        self.compute_type_is_set = compute_dtype is not None
        self.quant_state: QuantState | None = None
        self.quant_storage = quant_storage

    def set_compute_type(self, x: torch.Tensor) -> None:
        if x.dtype in (torch.float32, torch.bfloat16):
            # A dtype that is safe to compute in: use it, for speed and stability.
            self.compute_dtype = x.dtype
        elif x.dtype == torch.float16 and self.compute_dtype in (None, torch.float32):
            if x.numel() == x.shape[-1]:
                warnings.warn(
                    "Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
                    "(default). This will lead to slow inference.",
                    stacklevel=3,
                )
                warnings.filterwarnings("ignore", message=".*inference.")
            else:
                warnings.warn(
                    "Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
                    "(default). This will lead to slow inference or training speed.",
                    stacklevel=3,
                )
                warnings.filterwarnings("ignore", message=".*inference or training")

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        quant_state = getattr(self.weight, "quant_state", None)
        if quant_state is not None:
            for k, v in quant_state.as_dict(packed=True).items():
                destination[prefix + "weight." + k] = v if keep_vars else v.detach()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        wkey = prefix + "weight"
        qs_keys = [k for k in state_dict if k.startswith(wkey + ".")]
        if not qs_keys or wkey not in state_dict:
            # A float checkpoint (quantized on the next move to a device) or nothing for us.
            super()._load_from_state_dict(
                state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
            )
            return
        stats = {k[len(wkey) + 1 :]: state_dict[k] for k in qs_keys}
        data = state_dict[wkey]
        device = data.device if self.weight.device.type == "meta" else self.weight.device
        try:
            self.weight = Params4bit.from_prequantized(
                data=data, quantized_stats=stats, requires_grad=False, device=device, module=self
            )
            shape = self.weight.quant_state.shape
            if tuple(shape) != (self.out_features, self.in_features):
                raise ValueError(
                    f"the checkpoint holds a [{shape[0]}, {shape[1]}] weight, this layer is "
                    f"[{self.out_features}, {self.in_features}]"
                )
        except ValueError as exc:
            error_msgs.append(f"While loading the 4-bit weight {wkey}: {exc}")
            return
        rest = {k: v for k, v in state_dict.items() if k != wkey and k not in qs_keys}
        inner_missing: list[str] = []
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, inner_missing, unexpected_keys, error_msgs)
        missing_keys.extend(k for k in inner_missing if k != wkey)

    def _forward_compiled(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        qs = weight.quant_state
        if qs is None:
            raise RuntimeError("Linear4bit: the 4-bit weight was never quantized; move the module to a device first")
        bias = self.bias
        inp_dtype = x.dtype
        if not self.compute_type_is_set:
            self.set_compute_type(x)
            self.compute_type_is_set = True
        compute_dtype = self.compute_dtype
        if compute_dtype is not None and compute_dtype != inp_dtype:
            x = x.to(compute_dtype)
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        out = traceable_linear_4bit(x, weight, qs, bias)
        return out if out.dtype == inp_dtype else out.to(inp_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self._forward_compiled(x)
        # Hot path: plain dict lookups only (Module.__getattr__ and tensor-subclass
        # properties cost microseconds each, a whole 1-token kernel on a GPU).
        params = self._parameters
        weight = params.get("weight")
        if weight is None:  # replaced by a wrapper (parametrization, FSDP, ...)
            weight = self.weight
        qs = weight.__dict__.get("quant_state") if isinstance(weight, Params4bit) else None
        if qs is None:
            fix_4bit_weight_quant_state_from_module(self)
            weight = self.weight
            qs = weight.quant_state
        fast = weight.__dict__.get("_bnb_fast")
        if fast is None or fast.qs is not qs or fast.absmax is not qs.absmax:
            fast = _fast_path(weight, qs)
        if x.shape[-1] != fast.in_features:
            raise ValueError(f"Linear4bit expects inputs with {fast.in_features} features, got shape {tuple(x.shape)}")
        if x.device != fast.device:
            raise ValueError(f"Linear4bit: the input is on {x.device} but the 4-bit weight is on {fast.device}")
        bias = params["bias"] if "bias" in params else self.bias
        inp_dtype = x.dtype
        if bias is not None and bias.dtype != inp_dtype:
            bias.data = bias.data.to(inp_dtype)
        if not self.compute_type_is_set:
            self.set_compute_type(x)
            self.compute_type_is_set = True
        compute_dtype = self.compute_dtype
        if compute_dtype is not None and compute_dtype != inp_dtype:
            x = x.to(compute_dtype)
            if bias is not None:
                bias = bias.to(compute_dtype)
        if (x.requires_grad or (bias is not None and bias.requires_grad)) and torch.is_grad_enabled():
            out = MatMul4Bit.apply(x, fast.plain, None, bias, qs, fast.run)
        else:
            out = fast.run(x, bias)
        return out if out.dtype == inp_dtype else out.to(inp_dtype)


class LinearFP4(Linear4bit):
    """Linear4bit with the FP4 data type."""

    def __init__(
        self,
        input_features: int,
        output_features: int,
        bias: bool = True,
        compute_dtype: torch.dtype | None = None,
        compress_statistics: bool = True,
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            input_features, output_features, bias, compute_dtype, compress_statistics, "fp4", quant_storage, device
        )


class LinearNF4(Linear4bit):
    """Linear4bit with the NF4 data type (QLoRA's NormalFloat)."""

    def __init__(
        self,
        input_features: int,
        output_features: int,
        bias: bool = True,
        compute_dtype: torch.dtype | None = None,
        compress_statistics: bool = True,
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            input_features, output_features, bias, compute_dtype, compress_statistics, "nf4", quant_storage, device
        )
