"""Quantize a parameter that is not a Linear weight (e.g. stacked MoE expert weights) to 4
bit and dequantize it on access, through ``torch.nn.utils.parametrize``.

The state dict keeps the reference release's layout: ``<name>`` holds the packed data and
``<name>.absmax``, ``<name>.quant_map``, ... the quant state.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.utils.parametrize as P

from bnb_quant import QuantState, dequantize_4bit, quantize_4bit

__all__ = ["Bnb4bitParametrization", "replace_parameter_4bit", "replace_parameter_4bit_prequantized"]


class Bnb4bitParametrization(torch.nn.Module):
    """Dequantizes the (already quantized) parameter it is registered on."""

    def __init__(self, quant_state: QuantState) -> None:
        super().__init__()
        if not isinstance(quant_state, QuantState):
            raise TypeError(f"quant_state must be a QuantState, got {type(quant_state).__name__}")
        self.quant_state = quant_state

    @torch.no_grad()
    def forward(self, quantized_param: torch.Tensor) -> torch.Tensor:
        return dequantize_4bit(quantized_param, self.quant_state)


def _check_param(module: torch.nn.Module, param_name: str) -> torch.nn.Parameter:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not hasattr(module, param_name):
        raise AttributeError(f"Module does not have parameter '{param_name}'")
    param = getattr(module, param_name)
    if not isinstance(param, torch.nn.Parameter):
        raise TypeError(f"Parameter '{param_name}' is not an instance of nn.Parameter")
    return param


def replace_parameter_4bit_prequantized(
    module: torch.nn.Module, param_name: str, qs_dict: dict[str, Any], device: torch.device | str
) -> None:
    """Register dequantization for a parameter that already holds packed 4-bit data."""
    param = _check_param(module, param_name)
    quant_state = QuantState.from_dict(qs_dict, device=device)
    nbytes = param.numel() * param.element_size()
    if nbytes != (quant_state.shape.numel() + 1) // 2:
        raise ValueError(
            f"parameter '{param_name}' holds {nbytes} bytes, the quant state describes shape {tuple(quant_state.shape)}"
        )
    P.register_parametrization(module, param_name, Bnb4bitParametrization(quant_state), unsafe=True)
    _register_hooks(module, param_name)


def replace_parameter_4bit(
    module: torch.nn.Module,
    param_name: str,
    compress_statistics: bool = False,
    quant_type: str = "nf4",
    blocksize: int | None = None,
) -> None:
    """Quantize ``module.<param_name>`` to 4 bit in place; reading it dequantizes."""
    param = _check_param(module, param_name)
    quantized, quant_state = quantize_4bit(
        param.data, blocksize=blocksize, compress_statistics=compress_statistics, quant_type=quant_type
    )
    setattr(module, param_name, torch.nn.Parameter(quantized, requires_grad=False))
    del param
    P.register_parametrization(module, param_name, Bnb4bitParametrization(quant_state), unsafe=True)
    _register_hooks(module, param_name)


def _enable_cache(module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
    P._cache_enabled += 1


def _disable_cache(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
    P._cache_enabled -= 1
    if not P._cache_enabled:
        P._cache = {}


def _register_hooks(module: torch.nn.Module, param_name: str) -> None:
    hook = partial(_state_dict_post_hook, param_name=param_name)
    if hasattr(module, "register_state_dict_post_hook"):
        module.register_state_dict_post_hook(hook)
    else:
        # torch < 2.5 has only the private form; same hook signature, and returning None keeps
        # the state dict being written.
        module._register_state_dict_hook(hook)
    # Dequantize once per forward even when the parameter is read several times.
    module.register_forward_pre_hook(_enable_cache)
    module.register_forward_hook(_disable_cache)


def _state_dict_post_hook(
    module: torch.nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any, *, param_name: str
) -> None:
    original_key = f"{prefix}parametrizations.{param_name}.original"
    if original_key not in state_dict:
        return
    state_dict[f"{prefix}{param_name}"] = state_dict.pop(original_key)
    parametrization = next(
        (p for p in module.parametrizations[param_name] if isinstance(p, Bnb4bitParametrization)), None
    )
    if parametrization is None:
        raise RuntimeError(f"no 4-bit parametrization found for '{param_name}'")
    for k, v in parametrization.quant_state.as_dict(packed=True).items():
        state_dict[f"{prefix}{param_name}.{k}"] = v
